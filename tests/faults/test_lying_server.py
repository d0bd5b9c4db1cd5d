"""An authorization server that lies: a key set built to cost the plugin server its CPU.

An RSA JWK with a huge private exponent ``d`` and no primes makes a JWK parser factor the modulus
(cryptography's ``rsa_recover_prime_factors``): one call that never yields, so every request of the
plugin server, on every route, waits behind it until Kong's read timeout (60 s; 8 s here) and is
then proxied unauthenticated. The key set must be refused cheaply and every other request answered.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator

import pytest

from tests.harness import httpserver
from tests.harness import stack as C
from tests.harness.upstream import EchoUpstream

MODES = pytest.mark.parametrize("threads", [False, True], ids=["default-gevent", "threads"])


def b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HOSTILE = {"kty": "RSA", "kid": "hostile", "e": "AQAB",
           "n": b64(secrets.randbits(16384) | (1 << 16383) | 1),
           "d": b64(secrets.randbits(40000) | (1 << 39999))}  # fmt: skip


@pytest.fixture
def jwks_server() -> Iterator[str]:
    body = json.dumps({"keys": [HOSTILE]}).encode()

    class Handler(httpserver.Handler):
        def handle_request(self) -> None:
            httpserver.send(self, 200, body)

    with httpserver.serve(Handler) as url:
        yield url + "/jwks"


def forged(kid: str) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": kid}).encode()).rstrip(b"=").decode()
    claims = {"iss": "http://as.example", "aud": C.RESOURCE, "exp": 4_000_000_000, "sub": "x"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{'A' * 342}"


@MODES
def test_a_key_set_built_to_burn_cpu_is_refused_cheaply_and_nothing_is_proxied(
    start_kong: C.StartKong, upstream: EchoUpstream, jwks_server: str, threads: bool
) -> None:
    config = C.plugin_config(authorization_servers=["http://as.example"], jwks_endpoint=jwks_server)
    kong = start_kong(C.declarative(config), threads=threads, flags="--request-budget 2", rpc_timeout=8)
    before = len(upstream.requests)
    response = C.call(kong, forged("hostile"))
    assert response.status_code == 401, response.text  # the key is not usable: unknown
    assert response.json()["error_description"] == "The access token's signing key is unknown"
    assert C.call(kong, None).status_code == 401  # and the server still answers everyone else
    assert len(upstream.requests) == before
    assert C.server_errors(kong) == []
