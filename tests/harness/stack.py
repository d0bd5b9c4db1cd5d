"""The one set of helpers that start a stack and talk to it, shared by the integration, fault and
interop tests and by the benchmark (``bench/``): the real plugin server behind the Kong stand-in,
a plugin config and a one-route ``kong.yaml`` for it, a call through the gateway, the assertions
on a refusal, a driver that runs one request's access phase without HTTP, /proc readings of the
plugin server process and a loopback HTTP server for tests that need a server of their own.

The pytest fixtures built on these (``start_kong``, ``kong``) are in ``tests/conftest.py``.
Nothing here reads /work/shared or anything outside the repository.
"""

from __future__ import annotations

import copy
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.harness.kong_standin import KongStandIn
from tests.harness.kong_standin.pdk import ExitResponse, RequestState
from tests.harness.kong_standin.records import RequestRecord
from tests.harness.kong_standin.router import find_route

ROOT = Path(__file__).resolve().parent.parent.parent
KONG_YAML = ROOT / "kong" / "kong.yaml"
CONSOLE_SCRIPT = Path(sys.executable).parent / "ai-mcp-oauth2"
PLUGIN = "ai-mcp-oauth2"
RESOURCE = "http://localhost:8000/mcp"
AUTHORIZATION_SERVER = "http://localhost:9090"
METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"
MCP_REQUEST: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
BODY_BUFFER_SIZE = "1m"  # KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE of the image and the compose stack
#: The ``error`` member (and RFC 6750 challenge code) each refusal status carries, unless told otherwise.
ERRORS = {
    400: "invalid_request",
    401: "invalid_token",
    403: "access_denied",
    411: "length_required",
    413: "request_too_large",
    500: "server_error",
    503: "temporarily_unavailable",
}
MISSING_TOKEN = "Missing access token"  # the 401 without an error code (RFC 6750 §3.1)


# ------------------------------------------------------------------------------------ configuration
def plugin_env(prefix: Path | str, threads: bool = False, flags: str = "", launcher: str = "") -> dict[str, str]:
    """What the README tells a user to set for Kong ("Install into Kong") and the image sets, pointed at ``prefix``:
    the plugin's default mode (gevent, monkey-patched), or kong-pdk's thread mode with ``threads``;
    ``flags`` are more of the plugin server's flags, ``launcher`` a command the start command runs
    under. ``AI_MCP_OAUTH2_SERVER_FLAGS`` in the environment adds flags too (e.g. to run every
    test with ``--request-budget``)."""
    from_env = os.environ.get("AI_MCP_OAUTH2_SERVER_FLAGS", "").strip()
    flags = "".join(f" {f}" for f in ("--threads" if threads else "", flags, from_env) if f)
    script = f"{launcher} {CONSOLE_SCRIPT}" if launcher else str(CONSOLE_SCRIPT)
    return {
        "KONG_PREFIX": str(prefix),
        "KONG_PLUGINS": f"bundled,{PLUGIN}",
        "KONG_PLUGINSERVER_NAMES": PLUGIN,
        "KONG_PLUGINSERVER_AI_MCP_OAUTH2_SOCKET": f"{prefix}/{PLUGIN}.socket",
        "KONG_PLUGINSERVER_AI_MCP_OAUTH2_START_CMD": f"{script} --kong-prefix {prefix}{flags}",
        "KONG_PLUGINSERVER_AI_MCP_OAUTH2_QUERY_CMD": f"{CONSOLE_SCRIPT} --dump",
        # as kong/Dockerfile and docker-compose.yml set it (Kong's default, 8k, holds less than
        # max_request_body_size: a body past it cannot be handed to the plugin)
        "KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE": BODY_BUFFER_SIZE,
    }


def plugin_config(**overrides: Any) -> dict[str, Any]:
    """The plugin's config as a user writes it in ``kong.yaml``: ``resource`` and
    ``authorization_servers`` plus ``overrides``; an override of None removes the field."""
    config: dict[str, Any] = {"resource": RESOURCE, "authorization_servers": [AUTHORIZATION_SERVER]}
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


def declarative(
    config: dict[str, Any] | None = None,
    paths: list[str] | None = None,
    consumers: list[dict[str, Any]] | None = None,
    name: str = PLUGIN,
) -> dict[str, Any]:
    """A one-route kong.yaml with the plugin ``name`` on the route, like kong/kong.yaml."""
    document: dict[str, Any] = {"consumers": consumers} if consumers else {}
    return document | {
        "_format_version": "3.0",
        "services": [{
            "name": "mcp-server",
            "url": "http://mcp-server:9000",
            "routes": [{
                "name": "mcp",
                "paths": paths or ["/mcp", METADATA_PATH],
                "strip_path": False,
                "plugins": [{"name": name, "config": plugin_config() if config is None else config}],
            }],
        }],
    }  # fmt: skip


# ------------------------------------------------------------------------------------------- a stack
def stand_in(
    prefix: Path,
    document: dict[str, Any] | None = None,
    upstream_port: int = 9,
    env: dict[str, str] | None = None,
    threads: bool = False,
    flags: str = "",
    launcher: str = "",
    **kwargs: Any,
) -> KongStandIn:
    """A stand-in (not started yet) loaded with ``document`` (default: :func:`declarative`), its
    upstream ``mcp-server:9000`` on ``upstream_port``, with the plugin server of ``env`` (default:
    the real plugin's, :func:`plugin_env` with ``threads``, ``flags`` and ``launcher``). ``kwargs``
    go to :class:`KongStandIn`."""
    prefix.mkdir(parents=True, exist_ok=True)
    if env is None:
        env = plugin_env(prefix, threads, flags, launcher)
    kwargs.setdefault("host_map", {"mcp-server:9000": f"127.0.0.1:{upstream_port}"})
    return KongStandIn(env=env, declarative=copy.deepcopy(document or declarative()), **kwargs)


def start(prefix: Path, document: dict[str, Any] | None = None, **kwargs: Any) -> KongStandIn:
    """:func:`stand_in`, started."""
    kong = stand_in(prefix, document, **kwargs)
    kong.start()
    return kong


StartKong = Callable[..., KongStandIn]


@contextmanager
def started_kongs(tmp_path: Path, upstream_port: int) -> Iterator[StartKong]:
    """The body of the ``start_kong`` fixture: ``start(document=None, **kwargs)`` starts one more
    stand-in (see :func:`start`); every one started is stopped at the end."""
    kongs: list[KongStandIn] = []

    def start_one(document: dict[str, Any] | None = None, **kwargs: Any) -> KongStandIn:
        kwargs.setdefault("upstream_port", upstream_port)
        kong = stand_in(tmp_path / f"kong{len(kongs)}", document, **kwargs)
        kongs.append(kong)  # stopped at the end even if it fails to start
        kong.start()
        return kong

    try:
        yield start_one
    finally:
        for kong in kongs:
            kong.stop()


# ------------------------------------------------------------------------------- calling the gateway
def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def session() -> requests.Session:
    """An HTTP client that ignores the environment's proxy settings (tests talk to loopback)."""
    http = requests.Session()
    http.trust_env = False
    return http


def call(
    kong: KongStandIn,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    http: requests.Session | None = None,
    timeout: float = 30,
) -> requests.Response:
    """One MCP request (``tools/list``) over real HTTP through the stand-in, with ``token`` as the
    bearer token and ``headers``; on ``http``, or on a session of its own (thread-safe)."""
    sent = {**bearer(token), **(headers or {})}
    if http is not None:
        return http.post(kong.proxy_url + "/mcp", json=MCP_REQUEST, headers=sent, timeout=timeout)
    with session() as own:
        return own.post(kong.proxy_url + "/mcp", json=MCP_REQUEST, headers=sent, timeout=timeout)


# ----------------------------------------------------------------------------------------- refusals
def assert_refused(
    response: requests.Response,
    status: int,
    description: str,
    error: str | None = None,
    kong: KongStandIn | None = None,
    upstream: Any = None,
    before: int | None = None,
) -> None:
    """``response`` is the plugin's refusal with ``status``, refused by the rule whose
    ``error_description`` is ``description``, with the ``error`` code (by default the status's,
    :data:`ERRORS`) in the JSON body and, for 400 and 401, in the RFC 6750 challenge with the
    same description and the ``resource_metadata`` of RFC 9728 (a missing token's challenge
    carries no error code). A 503 says when to retry and challenges nobody. With ``kong``, the
    stand-in did not proxy the request; with ``upstream`` and ``before``, the upstream received
    nothing since it had ``before`` requests."""
    error = error or (ERRORS[status] if description != MISSING_TOKEN else "unauthorized")
    context = f"{response.status_code} {response.headers.get('WWW-Authenticate')} {response.text}"
    assert response.status_code == status, context
    body = response.json()
    assert (body["error"], body["error_description"]) == (error, description), context
    if status in (400, 401):
        challenge = response.headers["WWW-Authenticate"]
        if description == MISSING_TOKEN:
            assert challenge.startswith('Bearer resource_metadata="') and "error=" not in challenge, challenge
        else:
            assert challenge.startswith(f'Bearer error="{error}", error_description="{description}"'), challenge
            assert ', resource_metadata="http' in challenge, challenge
    else:
        assert "WWW-Authenticate" not in response.headers, context
    if status == 503:
        assert response.headers["Retry-After"].isdigit(), context
    if kong is not None:
        assert kong.last.proxied is False, "a refused request was proxied"
    if upstream is not None:
        assert len(upstream.requests) == before, "a refused request reached the upstream"


def assert_unavailable(response: requests.Response, description: str | None = None) -> None:
    """A 503 of the plugin (``temporarily_unavailable``, ``Retry-After``, no challenge); with
    ``description``, for that reason."""
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["error"] == "temporarily_unavailable"
    assert "WWW-Authenticate" not in response.headers
    if description is not None:
        assert response.json()["error_description"] == description, response.text


def server_errors(kong: KongStandIn, markers: tuple[str, ...] = (": ERROR: ", "Traceback")) -> list[str]:
    """The plugin server's output lines with one of ``markers``: by default an error it logged or
    a traceback; ``("unexpected", "Error")`` finds what escaped into the plugin's catch-all (it
    logs "unexpected <type> at ...")."""
    return [line for line in kong.server_output if any(marker in line for marker in markers)]


# ---------------------------------------------------------------------------- without the listener
def drive(
    kong: KongStandIn,
    method: str = "POST",
    path: str = "/mcp",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, RequestRecord]:
    """One request through the stand-in's router and access phase, over the real plugin-server
    socket, without the HTTP listener and the upstream (what ``proxy._Handler`` does up to the
    upstream call). ``body`` is the request body, sent with ``Content-Type: application/json`` and
    its ``Content-Length`` (default: a ``tools/list`` request for a POST, none otherwise). Returns
    the status Kong would answer with (200: proxied) and the record."""
    if body is None:
        body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}' if method == "POST" else b""
    sent = [["Host", f"127.0.0.1:{kong.port}"], ["User-Agent", "bench"], ["Accept", "*/*"]]
    if body:
        sent += [["Content-Type", "application/json"], ["Content-Length", str(len(body))]]
    sent += [[k, v] for k, v in (headers or {}).items()]
    state = RequestState(
        request_id="bench",
        method=method,
        raw_uri=path,
        headers=sent,
        body=body,
        client_ip="127.0.0.1",
        server_port=kong.port,
        trusted_ips=kong.trusted_ips,
    )
    record = RequestRecord(request_id="bench", method=method, path=path)
    config = kong.config
    match = find_route(config.decl.routes, method, state.host, state.path, state.get_header)
    if match is None:
        return 404, record
    outcome = kong.run_plugins(config, match, state, record)
    if outcome == "error":
        return 500, record
    if isinstance(outcome, ExitResponse):
        record.status = outcome.status
        return outcome.status, record
    record.proxied = True
    record.status = 200
    return 200, record


# ------------------------------------------------------------------------------- the server process
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


def rpc_connections(kong: KongStandIn, name: str = PLUGIN) -> int:
    """Open RPC connections of the stand-in to a plugin server (read from the client's pool; the
    harness has no public accessor for it)."""
    client = kong.servers[name].rpc
    assert client is not None, f"no RPC client for {name}"
    with client._lock:
        return len(client._all)


# ------------------------------------------------------------------------------------------ loopback
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
