"""Per-operation scopes and the MCP 2026-07-28 step-up, end to end, with pieces nobody here wrote.

The MCP Python SDK's OAuth client (authorization code with PKCE, ``OAuthClientProvider``) talks
through the plugin (real plugin server behind the Kong stand-in) to an SDK MCP server with a
read-only tool (``read_file``: the route's ``mcp:read``) and an admin tool (``delete_repo``: also
``mcp:admin``, an ``mcp_operations`` entry); oidc-provider is the authorization server, its user
logs in and consents to whatever is asked (server.mjs).

What the SDK does (mcp 2.3, mcp/client/auth/oauth2.py ``_auth_flow``): a ``403`` whose
``WWW-Authenticate`` error is ``insufficient_scope`` is a step-up; it takes the challenge's
``scope``, unions it with the scope requested and granted before (SEP-2350), runs the
authorization-code flow again with that scope and retries the request with the new token.

Each test runs the whole flow twice over: on a 2025-11-25 session (``initialize()``: no routing
headers, the operation is always read from the body) and on a 2026-07-28 session (``discover()``:
``Mcp-Method``/``Mcp-Name`` on every request, session.py ``_stamp``), with and without
``mcp_trust_routing_headers``; the PDK calls the stand-in recorded show which way each request was
classified (``kong.request.get_raw_body`` or not).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata
from pydantic import AnyUrl

from tests.harness.kong_standin import KongStandIn
from tests.harness.stack import StartKong, free_port, plugin_config, wait_until

from .conftest import SCOPED_RESOURCE_SCOPES, OidcProvider, secret
from .test_mcp_sdk_client import MemoryStorage

ROOT = Path(__file__).resolve().parent.parent.parent
REDIRECT_URI = "http://127.0.0.1/callback"  # the mcp-app client's (server.mjs); never dialled
CLIENT_ID = "mcp-app"
READ, ADMIN = SCOPED_RESOURCE_SCOPES
OPERATIONS = [{"method": "tools/call", "name": "delete_repo", "scopes_required": [ADMIN]}]
LEGACY, MODERN = "2025-11-25", "2026-07-28"


@dataclass
class Stack:
    url: str
    provider: OidcProvider
    mcp_port: int
    calls: Path  # the upstream's record of the tool calls it executed

    def upstream_calls(self) -> list[dict[str, Any]]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines()]


@pytest.fixture
def stack(node_app: str, tmp_path: Path) -> Iterator[Stack]:
    """A provider knowing the resource of a gateway on a free port, and the tools MCP server."""
    gateway_port, mcp_port = free_port(), free_port()
    url = f"http://127.0.0.1:{gateway_port}/mcp"
    calls = tmp_path / "upstream-calls.jsonl"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.interop.tools_mcp_server", "--port", str(mcp_port), "--calls", str(calls)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    provider = OidcProvider(node_app, tmp_path, scoped_resources=[url])
    try:
        provider.start()
        assert wait_until(lambda: _listening(mcp_port), 30), "the tools MCP server did not start"
        yield Stack(url=url, provider=provider, mcp_port=mcp_port, calls=calls)
    finally:
        provider.close()
        server.terminate()
        server.wait(10)


def _listening(port: int) -> bool:
    try:
        with httpx2.Client(trust_env=False) as http:
            http.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except httpx2.TransportError:
        return False


def gateway(start_kong: StartKong, stack: Stack, *, trust: bool, scopes_supported: list[str]) -> KongStandIn:
    """The plugin in front of the tools server: mcp:read for the route, mcp:admin more for delete_repo."""
    config = plugin_config(
        resource=stack.url, authorization_servers=[stack.provider.issuer], scopes_supported=scopes_supported,
        scopes_required=[READ], mcp_operations=OPERATIONS, mcp_trust_routing_headers=trust,
        upstream_headers=[{"header": "X-Scopes", "path": ["scope"]}],
    )  # fmt: skip
    route = {
        "name": "mcp",
        "paths": ["/mcp"],
        "strip_path": False,
        "plugins": [{"name": "ai-mcp-oauth2", "config": config}],
    }
    declarative = {
        "_format_version": "3.0",
        "services": [{"name": "mcp-server", "url": "http://mcp-server:9000", "routes": [route]}],
    }
    port = urlsplit(stack.url).port
    assert port is not None
    return start_kong(declarative, listen_port=port, host_map={"mcp-server:9000": f"127.0.0.1:{stack.mcp_port}"})


@dataclass
class Browser:
    """The user agent of the authorization-code flow: follows the provider's redirects (login and
    consent interactions, cookies kept) until the redirect to the client's REDIRECT_URI."""

    stack: Stack
    authorizations: list[dict[str, Any]] = field(default_factory=list)
    result: AuthorizationCodeResult | None = None
    cookies: httpx2.Cookies = field(default_factory=httpx2.Cookies)

    async def redirect(self, authorization_url: str) -> None:
        query = parse_qs(urlsplit(authorization_url).query)
        # what the upstream had executed when the client asked for this authorization
        self.authorizations.append(
            {"scope": query.get("scope", [None])[0], "upstream_calls": len(self.stack.upstream_calls())}
        )
        async with httpx2.AsyncClient(trust_env=False, cookies=self.cookies, timeout=10) as http:
            url = authorization_url
            for _ in range(10):
                answer = await http.get(url)
                assert answer.is_redirect, f"provider: {answer.status_code} at {url}: {answer.text[:500]}"
                url = urljoin(url, answer.headers["location"])
                if url.startswith(REDIRECT_URI + "?"):
                    params = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
                    assert "code" in params, f"provider: no code in {url}"
                    self.result = AuthorizationCodeResult(
                        code=params["code"], state=params.get("state"), iss=params.get("iss")
                    )
                    self.cookies = httpx2.Cookies(http.cookies)  # the login session, for the next authorization
                    return
            raise AssertionError(f"provider: no redirect to {REDIRECT_URI} after 10 hops")

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None, "client: callback before the redirect"
        result, self.result = self.result, None
        return result


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    www_authenticate: str | None


async def run_client(stack: Stack, era: str, browser: Browser, exchanges: list[Exchange]) -> dict[str, Any]:
    """The SDK client: a session of ``era``, then read_file, then delete_repo (with its step-up)."""
    storage = MemoryStorage()
    # a client registered with the provider beforehand (no dynamic registration)
    storage.client = OAuthClientInformationFull(
        client_id=CLIENT_ID,
        client_secret=secret(CLIENT_ID),
        token_endpoint_auth_method="client_secret_basic",
        redirect_uris=[AnyUrl(REDIRECT_URI)],
        grant_types=["authorization_code"],
        response_types=["code"],
    )
    auth = OAuthClientProvider(
        server_url=stack.url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[AnyUrl(REDIRECT_URI)],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="client_secret_basic",
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )

    async def record(response: httpx2.Response) -> None:
        request = response.request
        exchanges.append(
            Exchange(request.method, str(request.url), response.status_code, response.headers.get("www-authenticate"))
        )

    async with httpx2.AsyncClient(auth=auth, timeout=30, trust_env=False, event_hooks={"response": [record]}) as http:
        async with streamable_http_client(stack.url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                if era == MODERN:
                    await session.discover()
                else:
                    await session.initialize()
                negotiated = session.protocol_version
                read = await session.call_tool("read_file", {"path": "README.md"})
                delete = await session.call_tool("delete_repo", {"repo": "acme/widgets"})
    tokens = await storage.get_tokens()
    return {
        "negotiated": negotiated,
        "read": read.structured_content,
        "read_error": read.is_error,
        "delete": delete.structured_content,
        "delete_error": delete.is_error,
        "scope": tokens.scope if tokens else None,
    }


def raw_body_reads(kong: KongStandIn) -> list[tuple[int | None, int]]:
    """(status, get_raw_body calls) of each POST to the MCP endpoint, in order."""
    return [
        (record.status, sum(call.method == "kong.request.get_raw_body" for call in record.pdk_calls))
        for record in kong.requests
        if record.method == "POST" and record.path.startswith("/mcp")
    ]


@pytest.mark.parametrize("trust", [False, True], ids=["body", "trusted-headers"])
@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_the_sdk_steps_up_to_the_challenged_scope_and_the_retried_call_succeeds(
    start_kong: StartKong, stack: Stack, era: str, trust: bool
) -> None:
    # A 2025-11-25 request names no operation in its headers: its 401 hints scopes_supported, so that
    # is mcp:read alone here. A 2026-07-28 request does (Mcp-Method): its 401 hints the scopes of that
    # operation, so scopes_supported may list everything.
    scopes_supported = [READ] if era == LEGACY else [READ, ADMIN]
    kong = gateway(start_kong, stack, trust=trust, scopes_supported=scopes_supported)
    browser = Browser(stack)
    exchanges: list[Exchange] = []
    try:
        outcome = asyncio.run(run_client(stack, era, browser, exchanges))
    except Exception as exc:  # noqa: BLE001 - rethrown with the HTTP exchange that led to it
        trail = "\n".join(f"{e.method} {e.url} {e.status} {e.www_authenticate or ''}" for e in exchanges)
        raise AssertionError(
            f"client: the SDK's flow failed after:\n{trail}\nprovider log:\n{stack.provider.log()}"
        ) from exc

    assert outcome["negotiated"] == era, f"client: negotiated {outcome['negotiated']}"
    # 1. the narrow token calls the allowed tool
    assert browser.authorizations[0] == {"scope": READ, "upstream_calls": 0}, f"client: {browser.authorizations}"
    assert not outcome["read_error"] and outcome["read"]["content"] == "contents of README.md", outcome
    # 2. the protected tool: one 403 challenge with every scope the operation needs ...
    challenges = [e for e in exchanges if e.status == 403]
    assert len(challenges) == 1, f"plugin: {[(e.method, e.status) for e in exchanges]}"
    challenge = challenges[0].www_authenticate or ""
    assert challenge.startswith("Bearer ") and 'error="insufficient_scope"' in challenge, f"plugin: {challenge}"
    assert f'scope="{READ} {ADMIN}"' in challenge and 'resource_metadata="' in challenge, f"plugin: {challenge}"
    # ... the SDK's step-up: a second authorization with the challenged scopes (SEP-2350 union) ...
    assert [a["scope"] for a in browser.authorizations] == [READ, f"{READ} {ADMIN}"], (
        f"client: {browser.authorizations}"
    )
    asked = [(e["client"], e["scope"], e["resource"]) for e in stack.provider.events() if e["event"] == "authorization"]
    assert asked == [(CLIENT_ID, READ, stack.url), (CLIENT_ID, f"{READ} {ADMIN}", stack.url)], f"provider: {asked}"
    consented = [e["scope"] for e in stack.provider.events() if e["event"] == "consent"]
    assert consented == [READ, ADMIN], f"provider: {consented}"
    # ... which the upstream had seen none of delete_repo before; the retried call then succeeds
    calls = stack.upstream_calls()
    assert [c["tool"] for c in calls[: browser.authorizations[1]["upstream_calls"]]] == ["read_file"], calls
    assert [c["tool"] for c in calls] == ["read_file", "delete_repo"], f"upstream: {calls}"
    assert calls[0]["x-scopes"] == READ and set(calls[1]["x-scopes"].split()) == {READ, ADMIN}, f"upstream: {calls}"
    assert not outcome["delete_error"] and outcome["delete"] == {"deleted": "acme/widgets"}, outcome
    assert set((outcome["scope"] or "").split()) == {READ, ADMIN}, f"client: stored token scope {outcome['scope']}"
    assert exchanges[-1].status == 200, exchanges[-1]
    refused = [record for record in kong.requests if record.status == 403]
    assert len(refused) == 1 and not refused[0].proxied, "plugin: the refused delete_repo call reached the upstream"

    # 3. how each POST was classified: no token, no body read; with a token, from the headers alone
    # when trusted on a 2026-07-28 session, else from the body (one get_raw_body)
    reads = raw_body_reads(kong)
    by_headers = trust and era == MODERN
    assert reads and all(count == 0 for status, count in reads if status == 401), f"plugin: {reads}"
    expected = 0 if by_headers else 1
    authorized = [(status, count) for status, count in reads if status != 401]
    assert authorized and all(count == expected for _, count in authorized), f"plugin: {reads}"
    assert (403, expected) in authorized, f"plugin: {reads}"
    if era == MODERN:
        assert calls[1]["mcp-method"] == "tools/call" and calls[1]["mcp-protocol-version"] == MODERN, calls
