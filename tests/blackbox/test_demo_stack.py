"""The demo end to end, as a user meets it: kong/kong.yaml, a real MCP client, tokens from the
authorization server. Only HTTP: the same tests pass against real Kong (scripts/test-kong).
"""

from __future__ import annotations

import asyncio
import re

import pytest
import requests

from tests.harness.demo_client import call_tools, mint

from .conftest import Stack

RESOURCE = "http://localhost:8000/mcp"


def test_without_a_token_the_challenge_leads_to_the_metadata_and_the_authorization_server(
    stack: Stack, http: requests.Session
) -> None:
    response = http.post(stack.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "error_description": "Missing access token"}
    challenge = response.headers["WWW-Authenticate"]
    match = re.fullmatch(r'Bearer resource_metadata="([^"]+)", scope="mcp:tools"', challenge)
    assert match, challenge
    metadata = http.get(match.group(1))
    assert metadata.status_code == 200
    assert metadata.json() == {
        "resource": RESOURCE,
        "authorization_servers": ["http://localhost:9090"],
        "scopes_supported": ["mcp:tools"],
        "bearer_methods_supported": ["header"],
    }
    assert http.get(stack.proxy_url + "/.well-known/oauth-protected-resource/mcp").json() == metadata.json()


def test_a_real_mcp_client_with_a_minted_token_lists_and_calls_tools(stack: Stack) -> None:
    token = mint(stack.as_url, RESOURCE, {"sub": "alice", "client_id": "demo-agent"})
    tools, whoami = asyncio.run(call_tools(stack.mcp_url, token))
    assert set(tools) >= {"whoami", "echo"}
    assert whoami == {
        "identity": {"x-user-id": "alice", "x-client-id": "demo-agent", "x-scopes": "mcp:tools"},
        "authorization_forwarded": False,
    }


def test_a_real_mcp_client_without_a_valid_token_fails(stack: Stack) -> None:
    token = mint(stack.as_url, "http://localhost:8000/other")  # issued for another resource
    statuses: list[int] = []
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the HTTP 401 in exception groups
        asyncio.run(call_tools(stack.mcp_url, token, statuses))
    assert statuses == [401]


def test_a_successful_call_shows_every_status_the_client_saw(stack: Stack) -> None:
    statuses: list[int] = []
    asyncio.run(call_tools(stack.mcp_url, mint(stack.as_url, RESOURCE), statuses))
    assert statuses and all(200 <= status < 300 for status in statuses)


@pytest.mark.parametrize("token", ["not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."])
def test_invalid_tokens_get_invalid_token(stack: Stack, http: requests.Session, token: str) -> None:
    response = http.post(stack.mcp_url, headers={"Authorization": f"Bearer {token}"}, json={})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
