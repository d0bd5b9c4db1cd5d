"""Behaviour §4/§5/§6/§7/§9 under faults: an authorization server that drops connections, stalls,
restarts, answers 500 or garbage, or rotates its keys mid-load ends in 401 or 503, never in a
proxied request without validation; the plugin server neither wedges nor leaks threads, and
recovers by itself when the server comes back."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from tests.harness import stack as C
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.upstream import EchoUpstream

from .conftest import burst, exchange_config, introspection_config, jwt_config

MODES = ["drop", "hang", "500", "garbage", "wrong_json"]
#: Why each endpoint's failure is a 503 (the error_description), by failure mode.
FAILED_BECAUSE = {
    **{("jwks", mode): "The authorization server's keys could not be obtained" for mode in MODES},
    ("introspection", "drop"): "The authorization server could not be reached",
    ("introspection", "hang"): "The authorization server could not be reached",
    ("introspection", "500"): "The authorization server could not introspect the token",
    ("introspection", "garbage"): "The authorization server's introspection answer is not JSON",
    ("introspection", "401"): "The authorization server refused the gateway's credentials",
    ("token", "drop"): "The token exchange endpoint could not be reached",
    ("token", "hang"): "The token exchange endpoint could not be reached",
    ("token", "500"): "The token exchange endpoint refused the gateway or failed",
    ("token", "garbage"): "The token exchange answer is not a JSON object",
    ("token", "wrong_json"): "The token exchange answer is not a JSON object",
}
WIDTH = 8  # concurrent requests per burst


def extra_threads(kong: KongStandIn, pid: int) -> int:
    """Plugin-server threads beyond one per open RPC connection: kong-pdk's thread mode serves each
    connection with a thread (kept while the stand-in pools the connection, as Kong does) and runs
    each event in a thread of its own that must end with the event. In the default (gevent) mode
    handlers are greenlets, which the server's status counts."""
    return C.threads(pid) - C.rpc_connections(kong)


def handlers(kong: KongStandIn) -> int:
    status = kong.plugin_status(C.PLUGIN)
    return int(status["Handlers"]) + int(status["Events"])


def warm(kong: KongStandIn, tokens: list[str]) -> tuple[KongStandIn, int, int]:
    assert [r.status_code for r in burst(kong, tokens)] == [200] * len(tokens)
    pid = C.server_pid(kong)
    time.sleep(0.3)
    return kong, pid, extra_threads(kong, pid)


def assert_no_thread_leak(warmed: tuple[KongStandIn, int, int]) -> None:
    kong, pid, baseline = warmed
    assert C.wait_until(lambda: extra_threads(kong, pid) <= baseline and handlers(kong) == 0, 10), (
        C.threads(pid),
        C.rpc_connections(kong),
        baseline,
        handlers(kong),
    )


@pytest.mark.parametrize("endpoint", ["jwks", "introspection", "token"])
def test_every_failure_mode_is_503_never_proxied_and_leaks_no_threads(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream, endpoint: str
) -> None:
    config = {"jwks": jwt_config, "introspection": introspection_config, "token": exchange_config}[endpoint](authz)
    kong = start_kong(C.declarative(config))
    warmed = warm(kong, [authz.mint() for _ in range(WIDTH)])
    for mode in MODES:
        if endpoint == "introspection" and mode == "wrong_json":
            mode = "401"  # the gateway's own credentials refused: also 503
        kong.reload(C.declarative(config))  # a new instance: no keys, no cached tokens yet
        authz.fault(endpoint, mode)
        before = len(upstream.requests)
        responses = burst(kong, [authz.mint({"sub": f"{mode}-{i}"}) for i in range(WIDTH)])
        for response in responses:
            C.assert_unavailable(response)
        assert {r.json()["error_description"] for r in responses} == {FAILED_BECAUSE[endpoint, mode]}, mode
        assert len(upstream.requests) == before, mode
        authz.fault(endpoint, None)
        authz.release()
        assert kong.last.failures == []
    assert_no_thread_leak(warmed)
    # not wedged: the same server answers at once when the authorization server behaves again
    kong.reload(C.declarative(config))
    assert C.call(kong, authz.mint(), timeout=10).status_code == 200
    assert authz.errors == []


def test_a_stalled_introspection_endpoint_delays_only_the_requests_that_wait_on_it(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    kong = start_kong(C.declarative(introspection_config(authz, timeout=25000)))  # the hang lasts until release()
    cached = authz.issue_opaque({"sub": "cached"})
    warmed = warm(kong, [cached] * 24)
    authz.fault("introspection", "hang")
    before = len(upstream.requests)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        waiting = [pool.submit(C.call, kong, authz.issue_opaque({"sub": f"w{i}"})) for i in range(20)]
        time.sleep(0.2)
        for _ in range(20):
            assert C.call(kong, cached, timeout=5).status_code == 200
        # all 20 cached-token calls were answered while the 20 introspections still hung
        assert not any(f.done() for f in waiting)
        authz.release()
        stalled = [f.result(timeout=30) for f in waiting]
    for response in stalled:
        C.assert_unavailable(response)
    assert {r.json()["error_description"] for r in stalled} == {"The authorization server could not be reached"}
    assert len(upstream.requests) == before + 20  # only the cached-token requests went upstream
    authz.fault("introspection", None)
    authz.release()
    assert_no_thread_leak(warmed)
    assert C.call(kong, authz.issue_opaque(), timeout=10).status_code == 200


def test_the_authorization_server_restarting_gives_503s_then_200s_after_the_failure_backoff(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    """The server is down before the plugin ever had its keys: 503; it comes back on the same port
    with the same keys and the plugin recovers by itself once the 5 s failure backoff is over."""
    kong = start_kong(C.declarative(jwt_config(authz)))
    warmed = warm(kong, [authz.mint() for _ in range(WIDTH)])
    kong.reload(C.declarative(jwt_config(authz)))  # new instance: no keys held
    tokens = [authz.mint() for _ in range(WIDTH + 60)]  # minted while the server is up
    authz.stop()
    before = len(upstream.requests)
    failed_at = time.monotonic()
    down = burst(kong, tokens[:WIDTH])
    for response in down:
        C.assert_unavailable(response)
    assert {r.json()["error_description"] for r in down} == {
        "The authorization server's metadata could not be obtained"
    }
    authz.start()  # same object: same port, same keys
    statuses = []
    deadline = failed_at + 10
    recovered_at = None
    for token in tokens[WIDTH:]:
        if time.monotonic() > deadline:
            break
        response = C.call(kong, token, timeout=10)
        statuses.append(response.status_code)
        if response.status_code == 200:
            recovered_at = time.monotonic()
            break
        C.assert_unavailable(response)
        time.sleep(0.25)
    assert recovered_at is not None, statuses
    assert len(upstream.requests) == before + 1
    assert_no_thread_leak(warmed)


def test_introspection_recovers_as_soon_as_the_server_is_back(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    kong = start_kong(C.declarative(introspection_config(authz)))
    cached = authz.issue_opaque({"sub": "cached"})
    warmed = warm(kong, [cached] * WIDTH)
    new = [authz.issue_opaque() for _ in range(WIDTH + 1)]
    authz.stop()
    before = len(upstream.requests)
    down = burst(kong, new[:WIDTH])
    for response in down:
        C.assert_unavailable(response)
    assert {r.json()["error_description"] for r in down} == {"The authorization server could not be reached"}
    assert C.call(kong, cached).status_code == 200  # validated tokens keep working while it is down
    assert len(upstream.requests) == before + 1
    authz.start()
    assert C.call(kong, new[WIDTH], timeout=10).status_code == 200  # introspection failures are not cached
    assert_no_thread_leak(warmed)


def test_keys_rotated_mid_load_end_in_200_or_401_and_are_picked_up_after_the_cooldown(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    kong = start_kong(C.declarative(jwt_config(authz)))
    warmed = warm(kong, [authz.mint() for _ in range(4)])
    first_fetch = time.monotonic()
    fetches = authz.count("jwks")
    stop = threading.Event()
    results: list[tuple[str, int]] = []
    lock = threading.Lock()
    rotated = threading.Event()

    def load() -> None:
        for _ in range(2000):
            if stop.is_set():
                return
            new_key = rotated.is_set()
            status = C.call(kong, authz.mint(), timeout=10).status_code
            with lock:
                results.append(("new" if new_key else "old", status))
            time.sleep(0.02)

    before = len(upstream.requests)
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    authz.rotate("RS256")  # mint() now signs with the new kid; the old key is unpublished
    rotated.set()
    recovered = C.wait_until(
        lambda: any(s == 200 for k, s in results if k == "new"), first_fetch + 14 - time.monotonic()
    )
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert recovered, results[-10:]
    statuses = {s for _, s in results}
    assert statuses <= {200, 401}, statuses
    assert all(s == 200 for k, s in results if k == "old")
    new = [s for k, s in results if k == "new"]
    assert 401 in new and new[-1] == 200  # refused until the cooldown, accepted after the refetch
    assert authz.count("jwks") - fetches == 1  # one refetch for the whole flood of new-kid tokens
    assert len(upstream.requests) - before == sum(1 for _, s in results if s == 200)
    assert_no_thread_leak(warmed)
