"""The demo walk-through: what an MCP client does against the plugin, step by step.

1. call the MCP server without a token: 401 and a ``WWW-Authenticate`` challenge;
2. read the protected resource metadata it points to: the authorization server;
3. get a token from that authorization server (the mock's minting endpoint, a development shortcut
   standing in for an OAuth flow);
4. call MCP tools with the token, through the gateway, with the MCP Python SDK.

    python -m tests.harness.demo_client [--proxy http://localhost:8000] [--authorization-server http://localhost:9090]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any

import httpx2
import requests
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def mint(authorization_server: str, resource: str, claims: dict[str, Any] | None = None) -> str:
    response = requests.post(f"{authorization_server}/_mint", json={"aud": resource, **(claims or {})}, timeout=10)
    response.raise_for_status()
    return str(response.json()["access_token"])


async def call_tools(mcp_url: str, token: str, statuses: list[int] | None = None) -> tuple[list[str], dict[str, Any]]:
    """List the tools and call ``whoami`` through the gateway with the token (HTTP statuses go to ``statuses``)."""

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    async with httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=30, event_hooks={"response": [record]}
    ) as http:
        async with streamable_http_client(mcp_url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                tools = [tool.name for tool in (await session.list_tools()).tools]
                result = await session.call_tool("whoami", {})
                return tools, dict(result.structured_content or {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default="http://localhost:8000")
    parser.add_argument("--authorization-server", default="http://localhost:9090")
    args = parser.parse_args()
    mcp_url = f"{args.proxy}/mcp"
    session = requests.Session()
    session.trust_env = False

    print(f"1. POST {mcp_url} without a token")
    response = session.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    challenge = response.headers.get("WWW-Authenticate", "")
    print(f"   {response.status_code}  WWW-Authenticate: {challenge}")
    match = re.search(r'resource_metadata="([^"]+)"', challenge)
    if response.status_code != 401 or not match:
        print("   expected a 401 with resource_metadata", file=sys.stderr)
        return 1

    print(f"2. GET {match.group(1)}")
    metadata = session.get(match.group(1), timeout=10).json()
    print("   " + json.dumps(metadata))

    print(f"3. token for {metadata['resource']} from {args.authorization_server}")
    token = mint(args.authorization_server, metadata["resource"])
    print(f"   got a token ({len(token)} characters)")

    print("4. MCP over streamable HTTP through the gateway, with the token")
    tools, identity = asyncio.run(call_tools(mcp_url, token))
    print(f"   tools: {', '.join(tools)}")
    print(f"   whoami: {json.dumps(identity)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
