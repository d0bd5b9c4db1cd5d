"""The demo stack without Docker: the mock authorization server, the demo MCP server and the real
plugin server behind the Kong stand-in, loaded from ``kong/kong.yaml``, all on loopback.

This is a stand-in for Kong, for development and tests; docker-compose runs the same demo on real
Kong. Ports are those of docker-compose: Kong's proxy on 8000, the authorization server on 9090,
the MCP server on 9000 (reached as ``mcp-server:9000`` from ``kong.yaml``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.harness.kong_standin import KongStandIn, load_declarative
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.stack import KONG_YAML, ROOT, plugin_env


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the demo MCP server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the demo MCP server did not listen on port {port} within {timeout:.0f} s")


class DevStack:
    """Start and stop the three services; a context manager."""

    def __init__(self, proxy_port: int = 8000, as_port: int = 9090, mcp_port: int = 9000) -> None:
        self.proxy_port, self.as_port, self.mcp_port = proxy_port, as_port, mcp_port
        self.authz: MockAuthorizationServer | None = None
        self.mcp: subprocess.Popen[Any] | None = None
        self.kong: KongStandIn | None = None
        self.prefix = tempfile.TemporaryDirectory(prefix="kong-standin-")

    @property
    def proxy_url(self) -> str:
        return f"http://localhost:{self.proxy_port}"

    @property
    def as_url(self) -> str:
        return f"http://localhost:{self.as_port}"

    def start(self) -> DevStack:
        busy = [p for p in (self.proxy_port, self.as_port, self.mcp_port) if not _port_free(p)]
        if busy:
            raise RuntimeError(f"ports {busy} are in use: stop what runs there (another scripts/dev?) first")
        try:
            self.authz = MockAuthorizationServer(
                port=self.as_port, mtls_port=0, public_base=f"http://localhost:{self.as_port}"
            )
            self.authz.dev_endpoints = True
            self.authz.add_client("mcp-gateway", "client_secret_basic", secret="gateway-secret")
            self.authz.start()
            self.mcp = subprocess.Popen(
                [sys.executable, "-m", "tests.harness.demo_mcp_server", "--port", str(self.mcp_port)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            _wait_for_port(self.mcp_port, self.mcp)
            self.kong = KongStandIn(
                env=plugin_env(self.prefix.name),
                declarative=load_declarative(str(KONG_YAML)),
                host_map={"mcp-server:9000": f"127.0.0.1:{self.mcp_port}"},
                listen_port=self.proxy_port,
            )
            self.kong.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.kong is not None:
            self.kong.stop()
            self.kong = None
        if self.mcp is not None:
            self.mcp.terminate()
            try:
                self.mcp.wait(10)
            except subprocess.TimeoutExpired:
                self.mcp.kill()
                self.mcp.wait()
            self.mcp = None
        if self.authz is not None:
            self.authz.stop()
            self.authz = None
        self.prefix.cleanup()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    import signal
    import threading

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with DevStack() as stack:
        print(
            f"""
ai-mcp-oauth2 demo stack (the Kong stand-in, not real Kong: see README "Tests")
  Kong proxy (stand-in)      {stack.proxy_url}   routes from kong/kong.yaml
  MCP server (behind Kong)   {stack.proxy_url}/mcp
  authorization server       {stack.as_url}   (mock, with a token-minting endpoint)

Try:
  curl -i -X POST {stack.proxy_url}/mcp                                   # 401 + WWW-Authenticate
  curl -s {stack.proxy_url}/.well-known/oauth-protected-resource/mcp     # the metadata
  scripts/demo                                                          # mint a token, call an MCP tool

Ctrl-C stops everything.""",
            flush=True,
        )
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
