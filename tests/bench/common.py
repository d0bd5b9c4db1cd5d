"""Shared by the benchmark and the fault tests: the real plugin server (and the floor) behind the
Kong stand-in, a driver that runs one request's access phase through the stand-in without HTTP,
and /proc readings of the plugin server process.

Nothing here reads /work/shared or anything outside the repository.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tests.harness.kong_standin import KongStandIn
from tests.harness.kong_standin.core import RequestRecord
from tests.harness.kong_standin.pdk import ExitResponse, RequestState
from tests.harness.kong_standin.router import find_route

ROOT = Path(__file__).resolve().parent.parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "ai-mcp-oauth2"
FLOOR_SCRIPT = Path(__file__).resolve().parent / "floor.py"
PLUGIN = "ai-mcp-oauth2"
FLOOR = "bench-floor"
RESOURCE = "http://localhost:8000/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"


def plugin_env(prefix: Path, threads: bool = False, flags: str = "", launcher: str = "") -> dict[str, str]:
    """What the README tells a user to set for Kong, pointed at a temporary prefix: the plugin's
    default mode (gevent, monkey-patched), or kong-pdk's thread mode with ``threads``; ``flags``
    are more of the plugin server's flags, ``launcher`` a command the start command runs under."""
    flags = (" --threads" if threads else "") + (f" {flags}" if flags else "")
    script = f"{launcher} {CONSOLE_SCRIPT}" if launcher else str(CONSOLE_SCRIPT)
    return {
        "KONG_PREFIX": str(prefix),
        "KONG_PLUGINS": f"bundled,{PLUGIN}",
        "KONG_PLUGINSERVER_NAMES": PLUGIN,
        "KONG_PLUGINSERVER_AI_MCP_OAUTH2_SOCKET": f"{prefix}/{PLUGIN}.socket",
        "KONG_PLUGINSERVER_AI_MCP_OAUTH2_START_CMD": f"{script} --kong-prefix {prefix}{flags}",
        "KONG_PLUGINSERVER_AI_MCP_OAUTH2_QUERY_CMD": f"{CONSOLE_SCRIPT} --dump",
    }


def floor_env(prefix: Path, threads: bool = False) -> dict[str, str]:
    flags = "" if threads else " -g"  # kong-pdk: thread mode, or gevent (-g, patched by floor.py)
    return {
        "KONG_PREFIX": str(prefix),
        "KONG_PLUGINS": f"bundled,{FLOOR}",
        "KONG_PLUGINSERVER_NAMES": FLOOR,
        "KONG_PLUGINSERVER_BENCH_FLOOR_SOCKET": f"{prefix}/{FLOOR}.socket",
        "KONG_PLUGINSERVER_BENCH_FLOOR_START_CMD": (
            f"{sys.executable} {FLOOR_SCRIPT} --kong-prefix {prefix} --socket-name {FLOOR}.socket --no-lua-style{flags}"
        ),
        "KONG_PLUGINSERVER_BENCH_FLOOR_QUERY_CMD": f"{sys.executable} {FLOOR_SCRIPT} --dump",
    }


def plugin_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"resource": RESOURCE, "authorization_servers": ["http://localhost:9090"]}
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


def declarative(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A one-route kong.yaml with the plugin on the route, like kong/kong.yaml."""
    return {
        "_format_version": "3.0",
        "services": [{
            "name": "mcp-server",
            "url": "http://mcp-server:9000",
            "routes": [{
                "name": "mcp",
                "paths": ["/mcp", METADATA_PATH],
                "strip_path": False,
                "plugins": [{"name": name, "config": config}],
            }],
        }],
    }  # fmt: skip


def start(
    prefix: Path,
    name: str,
    config: dict[str, Any],
    upstream_port: int = 9,
    threads: bool = False,
    flags: str = "",
    launcher: str = "",
    **kwargs: Any,
) -> KongStandIn:
    """A started stand-in with one plugin server: the real plugin (name PLUGIN, see
    :func:`plugin_env`) or the floor, in the default (gevent) mode or kong-pdk's thread mode."""
    prefix.mkdir(parents=True, exist_ok=True)
    env = plugin_env(prefix, threads, flags, launcher) if name == PLUGIN else floor_env(prefix, threads)
    kwargs.setdefault("host_map", {"mcp-server:9000": f"127.0.0.1:{upstream_port}"})
    kong = KongStandIn(env=env, declarative=copy.deepcopy(declarative(name, config)), **kwargs)
    kong.start()
    return kong


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def drive(
    kong: KongStandIn, method: str = "POST", path: str = "/mcp", headers: dict[str, str] | None = None
) -> tuple[int, RequestRecord]:
    """One request through the stand-in's router and access phase, over the real plugin-server
    socket, without the HTTP listener and the upstream (what ``proxy._Handler`` does up to the
    upstream call). Returns the status Kong would answer with (200: proxied) and the record."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}' if method == "POST" else b""
    sent = [["Host", f"127.0.0.1:{kong.port}"], ["User-Agent", "bench"], ["Accept", "*/*"]]
    if body:
        sent += [["Content-Type", "application/json"], ["Content-Length", str(len(body))]]
    sent += [[k, v] for k, v in (headers or {}).items()]
    state = RequestState(
        request_id="bench",
        method=method,
        raw_uri=path,
        http_version=1.1,
        headers=sent,
        body=body,
        client_ip="127.0.0.1",
        client_port=40000,
        server_port=kong.port,
        trusted_ips=kong.trusted_ips,
    )
    record = RequestRecord(request_id="bench", method=method, path=path)
    config = kong._config
    match = find_route(config.decl.routes, method, state.host, state.path, state.get_header)
    if match is None:
        return 404, record
    state.route, state.service = match.route, match.route.service
    worker = kong._next_worker()
    outcome = None
    for plugin in kong.plugins_for(config, match.route, match.route.service):
        outcome = kong.run_phase(worker, config, plugin, "access", state, record)
        if outcome is not None:
            break
    if outcome == "error":
        return 500, record
    if isinstance(outcome, ExitResponse):
        record.status = outcome.status
        return outcome.status, record
    record.proxied = True
    record.status = 200
    return 200, record


def replay_script(record: RequestRecord) -> str:
    """The PDK calls of a request as the floor plugin's ``script``."""
    return json.dumps([[c.method, c.args] for c in record.pdk_calls])


def server_pid(kong: KongStandIn, name: str = PLUGIN) -> int:
    return int(kong.plugin_status(name)["Pid"])


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def rpc_connections(kong: KongStandIn, name: str = PLUGIN) -> int:
    """Open RPC connections of the stand-in to a plugin server (read from the client's pool; the
    harness has no public accessor for it)."""
    client = kong.servers[name].rpc
    with client._lock:
        return len(client._all)
