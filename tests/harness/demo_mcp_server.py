"""The demo upstream: a real MCP server (the MCP Python SDK, streamable HTTP) behind the plugin.

Its ``whoami`` tool reports the identity headers the gateway forwarded, so a user (and the tests)
can see what the plugin put on the upstream request. It trusts those headers only because it
runs behind the gateway; it is a demo, not a pattern for an MCP server on its own.

    python -m tests.harness.demo_mcp_server --host 127.0.0.1 --port 9000
"""

from __future__ import annotations

import argparse
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

IDENTITY_HEADERS = ("x-user-id", "x-client-id", "x-scopes", "x-roles")


def build_server() -> MCPServer:
    server = MCPServer(name="demo-mcp-server", instructions="Demo MCP server behind Kong's ai-mcp-oauth2 plugin.")

    @server.tool(description="Report the identity headers the gateway forwarded with this call.")
    def whoami(ctx: Context) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
        return {
            "identity": {name: headers[name] for name in IDENTITY_HEADERS if name in headers},
            "authorization_forwarded": "authorization" in headers,
        }

    @server.tool(description="Echo a message back.")
    def echo(message: str) -> str:
        return message

    return server


def app() -> Any:
    # Behind a gateway the Host header is the upstream's name (e.g. mcp-server:9000): the SDK's
    # DNS-rebinding protection, meant for servers browsers reach directly, would refuse it.
    return build_server().streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    uvicorn.run(app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
