"""The MCP Python SDK's own OAuth client does the MCP discovery dance through the plugin.

Three pieces nobody here wrote or configured to suit the plugin: the SDK's client-credentials
OAuth provider, oidc-provider as the authorization server, the SDK's MCP server as the upstream.
The first call gets 401 with ``resource_metadata``; the SDK reads the protected resource
metadata, the provider's metadata, obtains a token for the resource, then lists and calls tools
(streamable HTTP, SSE answers streamed through the stand-in). Each step is first checked on its
own, so a failure says which side broke: "provider:", "plugin:" or "client:".
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import requests
from mcp import ClientSession
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from tests.harness.kong_standin import KongStandIn
from tests.harness.stack import StartKong, plugin_config

from .conftest import OidcProvider, secret

ROOT = Path(__file__).resolve().parent.parent.parent
GATEWAY_PORT = 8000  # the provider knows resources on http://localhost:8000 only


class MemoryStorage:
    """The SDK's TokenStorage protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[int]:
    """The demo MCP server (MCP Python SDK, streamable HTTP) on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.demo_mcp_server", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "the demo MCP server did not start"
            time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(10)


def gateway(start_kong: StartKong, oidc: OidcProvider, mcp_port: int, prefix: str) -> KongStandIn:
    """The plugin in front of the MCP server at http://localhost:8000{prefix}/mcp."""
    resource = f"http://localhost:{GATEWAY_PORT}{prefix}/mcp"
    config = plugin_config(
        resource=resource, authorization_servers=[oidc.issuer], scopes_supported=["mcp:tools"],
        upstream_headers=[{"header": "X-User-Id", "path": ["sub"]}, {"header": "X-Client-Id", "path": ["client_id"]},
                          {"header": "X-Scopes", "path": ["scope"]}],
    )  # fmt: skip
    route: dict[str, Any] = {
        "name": "mcp", "strip_path": bool(prefix), "plugins": [{"name": "ai-mcp-oauth2", "config": config}],
        "paths": [prefix or "/mcp", f"/.well-known/oauth-protected-resource{prefix}/mcp"],
    }  # fmt: skip
    declarative = {
        "_format_version": "3.0",
        "services": [{"name": "mcp-server", "url": "http://mcp-server:9000", "routes": [route]}],
    }
    return start_kong(declarative, listen_port=GATEWAY_PORT, host_map={"mcp-server:9000": f"127.0.0.1:{mcp_port}"})


async def sdk_session(url: str, oidc: OidcProvider, statuses: list[tuple[str, str, int]]) -> tuple[list[str], Any]:
    auth = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryStorage(),
        client_id="mcp-client",
        client_secret=secret("mcp-client"),
        issuer=oidc.issuer,
    )

    async def record(response: httpx2.Response) -> None:
        statuses.append((response.request.method, str(response.request.url), response.status_code))

    async with httpx2.AsyncClient(auth=auth, timeout=30, event_hooks={"response": [record]}) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                tools = [tool.name for tool in (await session.list_tools()).tools]
                return tools, (await session.call_tool("whoami", {})).structured_content


@pytest.mark.parametrize("prefix", ["", "/services/x"])
def test_the_sdk_oauth_client_discovers_authenticates_and_calls_tools(
    start_kong: StartKong, oidc: OidcProvider, mcp_server: int, http: requests.Session, prefix: str
) -> None:
    url = f"http://localhost:{GATEWAY_PORT}{prefix}/mcp"
    kong = gateway(start_kong, oidc, mcp_server, prefix)

    # provider: issues a JWT for the resource on its own
    token = oidc.token("mcp-client", resource=url)
    assert token.get("token_type", "").lower() == "bearer", f"provider: no token for {url}: {token}"
    # plugin: challenges, serves metadata whose resource is exactly the URL (RFC 9728 §3.3), accepts the token
    challenge = http.post(url, json={})
    assert challenge.status_code == 401, f"plugin: {challenge.status_code} {challenge.text}"
    assert challenge.json()["error_description"] == "Missing access token", f"plugin: {challenge.text}"
    metadata_url = f"http://localhost:{GATEWAY_PORT}/.well-known/oauth-protected-resource{prefix}/mcp"
    assert f'resource_metadata="{url}/.well-known/oauth-protected-resource"' in challenge.headers["WWW-Authenticate"]
    metadata = http.get(metadata_url).json()
    assert metadata["resource"] == url and metadata["authorization_servers"] == [oidc.issuer], f"plugin: {metadata}"
    direct = http.post(
        url,
        headers={"Authorization": f"Bearer {token['access_token']}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
    )
    assert direct.status_code != 401, f"plugin: refused the provider's token: {direct.headers.get('WWW-Authenticate')}"

    # client: the whole dance by the SDK
    statuses: list[tuple[str, str, int]] = []
    try:
        tools, whoami = asyncio.run(sdk_session(url, oidc, statuses))
    except Exception as exc:  # noqa: BLE001 - rethrown with the HTTP exchange that led to it
        raise AssertionError(f"client: the SDK's flow failed after {statuses}") from exc
    assert {"whoami", "echo"} <= set(tools)
    assert whoami["identity"]["x-client-id"] == "mcp-client" and whoami["authorization_forwarded"] is False
    assert statuses[0][2] == 401, f"client: expected the first call to be challenged: {statuses}"
    assert any(status == 200 and "oauth-protected-resource" in u for _, u, status in statuses), statuses
    assert any(u.startswith(oidc.issuer) and status == 200 and method == "POST" for method, u, status in statuses)
    assert kong.requests[-1].proxied
