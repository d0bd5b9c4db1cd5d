"""Fault tests: the real plugin server behind the Kong stand-in while the (mock) authorization
server drops connections, stalls, restarts, answers 500 or garbage, or rotates keys under load."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.bench import common as C
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.upstream import EchoUpstream

SECRET = "kong-secret"
StartKong = Callable[..., KongStandIn]


@pytest.fixture
def authz() -> Iterator[MockAuthorizationServer]:
    """On a fixed port, so that stop() and start() bring the same server (same keys) back there."""
    server = MockAuthorizationServer(resource=C.RESOURCE, port=C.free_port())
    server.add_client("kong", "client_secret_basic", secret=SECRET)
    server.start()
    yield server
    server.release()
    server.stop()


@pytest.fixture
def start_kong(tmp_path: Path, upstream: EchoUpstream) -> Iterator[StartKong]:
    started: list[KongStandIn] = []

    def start(config: dict[str, Any]) -> KongStandIn:
        kong = C.start(tmp_path / f"kong{len(started)}", C.PLUGIN, config, upstream_port=upstream.port)
        started.append(kong)
        return kong

    yield start
    for kong in started:
        kong.stop()


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


def call(kong: KongStandIn, token: str | None, timeout: float = 30) -> requests.Response:
    """One MCP request over real HTTP through the stand-in (a session per call: thread-safe)."""
    with requests.Session() as session:
        session.trust_env = False
        return session.post(
            kong.proxy_url + "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers=C.bearer(token),
            timeout=timeout,
        )


def burst(kong: KongStandIn, tokens: list[str]) -> list[requests.Response]:
    with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
        return list(pool.map(lambda t: call(kong, t), tokens))


def assert_503(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["error"] == "temporarily_unavailable"
    assert "WWW-Authenticate" not in response.headers
