"""An MCP server (the MCP Python SDK, streamable HTTP) with one read-only tool and one admin tool,
the upstream of the step-up interop tests (test_step_up.py).

Every tool call it executes is appended as one JSON line to ``--calls FILE`` (the tool's name and
the identity headers the gateway forwarded), so a test can see exactly which calls reached the
upstream, in which order, under which granted scopes.

    python -m tests.interop.tools_mcp_server --port N --calls FILE
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings


def build_server(calls: Path) -> MCPServer:
    server = MCPServer(name="step-up-tools", instructions="A read-only tool and an admin tool.")

    def record(tool: str, ctx: Context) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
        entry = {
            "tool": tool,
            "x-scopes": headers.get("x-scopes"),
            "mcp-method": headers.get("mcp-method"),
            "mcp-protocol-version": headers.get("mcp-protocol-version"),
        }
        with calls.open("a") as out:
            out.write(json.dumps(entry) + "\n")
        return entry

    @server.tool(description="Read a file of the repository (needs mcp:read).")
    def read_file(path: str, ctx: Context) -> dict[str, Any]:
        record("read_file", ctx)
        return {"path": path, "content": f"contents of {path}"}

    @server.tool(description="Delete the repository (needs mcp:admin).")
    def delete_repo(repo: str, ctx: Context) -> dict[str, Any]:
        record("delete_repo", ctx)
        return {"deleted": repo}

    return server


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--calls", type=Path, required=True)
    args = parser.parse_args()
    # Behind the gateway the Host header is the upstream's name: DNS-rebinding protection off (as the demo server).
    app = build_server(args.calls).streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
