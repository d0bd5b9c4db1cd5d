"""Fault tests: the real plugin server behind the Kong stand-in while the (mock) authorization
server drops connections, stalls, restarts, answers 500 or garbage, or rotates keys under load.

The stack, the call through the gateway and the refusal assertions are those of
``tests/harness/stack.py`` (fixtures ``start_kong`` and ``upstream`` in ``tests/conftest.py``)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.harness import stack as C
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer

SECRET = "kong-secret"


@pytest.fixture
def authz() -> Iterator[MockAuthorizationServer]:
    """On a fixed port, so that stop() and start() bring the same server (same keys) back there."""
    server = MockAuthorizationServer(resource=C.RESOURCE, port=C.free_port())
    server.add_client("kong", "client_secret_basic", secret=SECRET)
    server.start()
    yield server
    server.release()
    server.stop()


def jwt_config(authz: MockAuthorizationServer, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "authorization_servers": [authz.issuer],
        "timeout": 1000,
        "claim_to_header": [{"claim": "sub", "header": "X-User"}],
        **extra,
    }
    return C.plugin_config(**options)


def introspection_config(authz: MockAuthorizationServer, **extra: Any) -> dict[str, Any]:
    return jwt_config(
        authz, introspection_endpoint=authz.introspection_endpoint, client_id="kong", client_secret=SECRET, **extra
    )


def exchange_config(authz: MockAuthorizationServer) -> dict[str, Any]:
    return jwt_config(
        authz,
        passthrough_credentials=True,
        token_exchange={
            "enabled": True,
            "token_endpoint": authz.token_endpoint,
            "client_id": "kong",
            "client_secret": SECRET,
        },
    )


def burst(kong: KongStandIn, tokens: list[str]) -> list[requests.Response]:
    with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
        return list(pool.map(lambda t: C.call(kong, t), tokens))
