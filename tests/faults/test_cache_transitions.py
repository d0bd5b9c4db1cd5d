"""Behaviour §5/§6/§7/§9 end to end: the real plugin server, in its default gevent mode, behind the
Kong stand-in, at the cache transitions where concurrent requests meet one fetch: a signing key
rotated in under traffic, and a new instance's first requests. Every valid request is accepted
and the (mock) authorization server is asked once. (The unit tests in ``tests/unit/test_jwks.py``,
``test_discovery.py``, ``test_tokens.py`` and ``test_token_exchange.py`` cover every transition
with the fetch held in flight; these prove the same through the real server.)"""

from __future__ import annotations

import time

import pytest

from kong_plugins.ai_mcp_oauth2.jwks import REFRESH_COOLDOWN
from tests.harness import stack as C
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.upstream import EchoUpstream

from .conftest import burst, exchange_config, introspection_config, jwt_config

WIDTH = 24  # concurrent requests


@pytest.mark.parametrize("old_key", ["kept", "removed"])
def test_a_key_rotated_in_under_traffic_is_accepted_for_every_concurrent_request(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream, old_key: str
) -> None:
    """Issue 10 item 3: six concurrent requests with tokens of a new key were one 200 and five
    401s, because the request that started the refetch moved the cooldown clock for the others."""
    kong = start_kong(C.declarative(jwt_config(authz)))
    old = authz.current_key("RS256")
    cached_old_token = authz.mint()
    assert C.call(kong, cached_old_token).status_code == 200  # metadata and keys fetched now
    warmed_at = time.monotonic()
    fetches = authz.count("jwks")
    if old_key == "kept":
        authz.add_key("RS256")  # published next to the old one; mint() signs with the newest
    else:
        authz.rotate("RS256")  # the old key is unpublished
    assert authz.current_key("RS256").kid != old.kid
    tokens = [authz.mint({"sub": f"new-{i}"}) for i in range(WIDTH)]
    # an unknown kid refetches at most once per cooldown, counted from the warm-up fetch
    time.sleep(max(0.0, warmed_at + REFRESH_COOLDOWN + 0.5 - time.monotonic()))
    authz.slow_seconds = 0.5  # the refetch is held at the server while the burst arrives
    authz.fault("jwks", "slow", count=1)
    before = len(upstream.requests)
    responses = burst(kong, tokens)
    assert [r.status_code for r in responses] == [200] * WIDTH, [r.text for r in responses if r.status_code != 200]
    assert authz.count("jwks") == fetches + 1
    assert len(upstream.requests) == before + WIDTH
    assert C.call(kong, cached_old_token).status_code == 200  # validated before: cached until it expires
    fresh_old = C.call(kong, authz.mint(key=old)).status_code
    assert fresh_old == (200 if old_key == "kept" else 401)
    assert authz.count("jwks") == fetches + 1
    assert kong.last.failures == [] and authz.errors == []


def test_a_new_instance_discovers_and_fetches_keys_once_for_a_burst_of_first_requests(
    start_kong: C.StartKong, authz: MockAuthorizationServer
) -> None:
    kong = start_kong(C.declarative(jwt_config(authz)))
    responses = burst(kong, [authz.mint({"sub": f"first-{i}"}) for i in range(WIDTH)])
    assert [r.status_code for r in responses] == [200] * WIDTH
    assert authz.count("metadata") == 1 and authz.count("jwks") == 1


def test_a_burst_with_one_new_opaque_token_is_introspected_once(
    start_kong: C.StartKong, authz: MockAuthorizationServer
) -> None:
    kong = start_kong(C.declarative(introspection_config(authz)))
    responses = burst(kong, [authz.issue_opaque()] * WIDTH)
    assert [r.status_code for r in responses] == [200] * WIDTH
    assert authz.count("introspection") == 1


def test_a_burst_with_one_new_token_is_exchanged_once(start_kong: C.StartKong, authz: MockAuthorizationServer) -> None:
    kong = start_kong(C.declarative(exchange_config(authz)))
    responses = burst(kong, [authz.mint()] * WIDTH)
    assert [r.status_code for r in responses] == [200] * WIDTH
    assert authz.count("token") == 1 and authz.count("jwks") == 1


def test_a_config_change_with_requests_in_flight_answers_them_all_and_releases_the_old_instance(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    """Kong starts a new instance and closes the old one while its requests still wait on the
    authorization server: they finish on the old instance, the new one serves at once, and no
    event, handler or closing instance is left behind. (That the old instance is released only
    after its last request is shown in tests/unit/test_pluginserver.py.)"""
    import concurrent.futures

    config = introspection_config(authz)
    kong = start_kong(C.declarative(config))
    authz.slow_seconds = 0.6  # within the config's 1 s timeout
    authz.fault("introspection", "slow")
    tokens = [authz.issue_opaque({"sub": f"in-flight-{i}"}) for i in range(WIDTH)]
    with concurrent.futures.ThreadPoolExecutor(WIDTH) as pool:
        waiting = [pool.submit(C.call, kong, token) for token in tokens]
        assert C.wait_until(lambda: authz.count("introspection") >= WIDTH // 2, 10)
        kong.reload(C.declarative({**config, "jwt_claims_leeway": 1}))  # a config change
        authz.fault("introspection", None)
        fresh = C.call(kong, authz.issue_opaque({"sub": "after"}))  # the new instance
        statuses = [future.result(timeout=30).status_code for future in waiting]
    assert statuses == [200] * WIDTH and fresh.status_code == 200
    status = kong.plugin_status(C.PLUGIN)
    assert C.wait_until(lambda: kong.plugin_status(C.PLUGIN)["ClosingInstances"] == 0, 10), status
    status = kong.plugin_status(C.PLUGIN)
    assert (status["Events"], status["Handlers"], len(status["Plugins"][C.PLUGIN]["Instances"])) == (0, 0, 1)
    assert authz.errors == []
