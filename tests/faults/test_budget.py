"""Every outbound call ends by the request's time budget, whole, in both modes: an authorization
server that drips its answer a byte at a time, stalls a TLS handshake, or sits behind a host name
whose every address drops packets. Kong proxies a request the plugin server has not answered
within its read timeout (60 s; 8 s here), so a call outliving the budget is a bypass.

The budget is 2 s here (45 s by default) and the configured ``timeout`` 60 s: ``timeout`` bounds
each socket operation, never the call. The server's own last resort (it answers 503 itself when a
handler stays silent past the budget plus 5 s) has its own description, so these tests can tell
that the outbound call itself ended. No timing is asserted: a call that outlived the budget would
show as a proxied request, the last resort's description, or a connection left open.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.harness import stack as C
from tests.harness.hostile import BlackHole, DripServer, hosts_launcher
from tests.harness.upstream import EchoUpstream

BUDGET = "--request-budget 2"
RPC_TIMEOUT = 8  # the stand-in's read timeout, like Kong's lua_socket_read_timeout
KEYS_UNAVAILABLE = "The authorization server's keys could not be obtained"
MODES = pytest.mark.parametrize("threads", [False, True], ids=["default-gevent", "threads"])


def config(jwks_endpoint: str) -> dict[str, object]:
    return C.plugin_config(
        authorization_servers=["http://as.example"], jwks_endpoint=jwks_endpoint, timeout=60000, ssl_verify=False
    )


def token() -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        {"iss": "http://as.example", "aud": C.RESOURCE, "exp": 4_000_000_000, "sub": "x"},
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )


def assert_refused_by_the_budget(response: requests.Response, upstream: EchoUpstream, before: int) -> None:
    C.assert_unavailable(response)
    assert response.json()["error_description"] == KEYS_UNAVAILABLE  # not the server's last resort
    assert len(upstream.requests) == before


@MODES
@pytest.mark.parametrize(
    "mode,scheme",
    [("headers", "http"), ("body", "http"), ("silent", "https")],
    ids=["dripped-headers", "dripped-body", "stalled-tls-handshake"],
)
def test_a_dripping_or_stalling_server_costs_the_request_its_budget_and_no_more(
    start_kong: C.StartKong, upstream: EchoUpstream, threads: bool, mode: str, scheme: str
) -> None:
    server = DripServer(mode).start()
    try:
        kong = start_kong(
            C.declarative(config(server.url(scheme=scheme))), threads=threads, flags=BUDGET, rpc_timeout=RPC_TIMEOUT
        )
        before = len(upstream.requests)
        assert_refused_by_the_budget(C.call(kong, token()), upstream, before)
        assert server.opened >= 1
        # the plugin hung up: no outbound work outlives the request
        assert C.wait_until(lambda: server.open_connections() == 0, 10), server.open_connections()
        assert C.server_errors(kong) == []
    finally:
        server.stop()


@MODES
def test_a_host_whose_every_address_drops_packets_costs_the_request_its_budget_and_no_more(
    start_kong: C.StartKong, tmp_path: Path, upstream: EchoUpstream, threads: bool
) -> None:
    """urllib3 gives each address the full connect timeout: 5 addresses x 2 s would be 10 s."""
    addresses = [f"127.0.0.{i}" for i in range(5, 10)]
    hole = BlackHole(addresses)
    launcher = hosts_launcher(tmp_path, {"keys.blackhole.test": addresses})
    try:
        kong = start_kong(
            C.declarative(config(f"http://keys.blackhole.test:{hole.port}/jwks")),
            threads=threads,
            flags=BUDGET,
            launcher=launcher,
            rpc_timeout=RPC_TIMEOUT,
        )
        before = len(upstream.requests)
        assert_refused_by_the_budget(C.call(kong, token()), upstream, before)
        # still serving, and the next request is refused the same way
        assert_refused_by_the_budget(C.call(kong, token()), upstream, before)
        assert C.server_errors(kong) == []
    finally:
        hole.close()
