"""KongStandIn: plays Kong 3.9+'s side for kong-pdk plugin servers."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .declarative import PluginEntity, Route, Service, build_config_json, parse_declarative
from .errors import ConfigError
from .metaschema import validate_plugin_schema
from .pdk import STEP_METHODS, TERMINAL_METHODS, LuaError, Pdk, Raised, RequestState, UnknownMethod, build_exit
from .process import ServerProcess, wait_for_socket
from .proxy import ProxyServer
from .records import ConfigState, Outcome, PdkCall, RequestRecord
from .router import Match
from .rpc import RpcClient
from .settings import ServerDef, Settings, read_settings

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
KNOWN_PHASES = ("certificate", "rewrite", "log", "access", "preread", "response")
NO_INSTANCE_RE = re.compile(r"no plugin instance", re.I)


@dataclass
class PluginServerInfo:
    name: str  # pluginserver name
    plugin: str  # plugin Name from the dump
    socket: str
    priority: int
    version: str
    phases: list[str]
    config_schema: dict[str, Any]
    rpc: RpcClient | None = None
    process: ServerProcess | None = None

    @property
    def client(self) -> RpcClient:
        assert self.rpc is not None, f"pluginserver {self.name} is not started"
        return self.rpc


class StartInstanceError(Exception):
    pass


class _Worker:
    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.instances: dict[str, tuple[int, int]] = {}  # plugin id -> (instance id, seq)
        self.lock = threading.Lock()


class KongStandIn:
    def __init__(
        self,
        env: dict[str, str],
        declarative: dict[str, Any],
        trusted_ips: Iterable[str] = (),
        rpc_timeout: float = 60.0,
        workers: int = 1,
        host_map: dict[str, str] | None = None,
        listen_port: int = 0,
        socket_wait_timeout: float = 20.0,
    ) -> None:
        self.env = dict(env)
        self.declarative = declarative
        self.trusted_ips = list(trusted_ips)
        self.rpc_timeout = rpc_timeout
        self.workers = [_Worker(i) for i in range(max(1, workers))]
        self.host_map = dict(host_map or {})
        self.listen_port = listen_port
        self.socket_wait_timeout = socket_wait_timeout
        self.requests: list[RequestRecord] = []
        self.server_output: list[str] = []
        self.error_log: list[tuple[str, str]] = []
        self.servers: dict[str, PluginServerInfo] = {}  # by plugin name
        self._lock = threading.Lock()
        self._rr = itertools.count()
        self._seq = itertools.count(1)
        self._config: ConfigState | None = None
        self._enabled: set[str] = set()
        self._http: ProxyServer | None = None
        self.proxy_url = ""  # set by start()
        self.port = 0
        self.started = False

    # ------------------------------------------------------------------ logging
    def log(self, level: str, message: str) -> None:
        with self._lock:
            self.error_log.append((level, message))

    def _sink(self, line: str) -> None:
        with self._lock:
            self.server_output.append(line)
        # Kong logs the relayed lines at INFO
        self.log("info", line)

    @property
    def last(self) -> RequestRecord:
        return self.requests[-1]

    def begin(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    @property
    def config(self) -> ConfigState:
        assert self._config is not None, "the stand-in is not started"
        return self._config

    @property
    def client_body_buffer_size(self) -> int:
        """nginx's client_body_buffer_size (``KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE``), in bytes."""
        return self.settings.client_body_buffer_size

    # ------------------------------------------------------------------ start-up
    def _child_env(self) -> dict[str, str]:
        # Kong's children inherit its environment; the stand-in passes its own environment plus `env`.
        e = dict(os.environ)
        e.update(self.env)
        return e

    def _query(self, sdef: ServerDef) -> dict[str, Any]:
        try:
            cp = subprocess.run(
                ["/bin/sh", "-c", sdef.query_cmd],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                env=self._child_env(),
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"loading plugins info from [{sdef.name}]: query command timed out") from None
        try:
            dump = json.loads(cp.stdout.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"failed decoding plugin info: {e} (pluginserver {sdef.name}, "
                f"stdout={cp.stdout[:200]!r}, stderr={cp.stderr[-300:]!r})"
            ) from None
        plugins = dump.get("Plugins") if isinstance(dump, dict) else dump
        if not isinstance(plugins, list) or not plugins or not isinstance(plugins[0], dict):
            raise ConfigError(f"failed decoding plugin info: pluginserver {sdef.name} dumped no plugin")
        # Kong 3.9+: "embedded pluginserver model" -> only the first plugin is registered
        return plugins[0]

    def _register(self, sdef: ServerDef, info: dict[str, Any], enabled: set[str]) -> None:
        name = info.get("Name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"pluginserver {sdef.name}: plugin info has no Name")
        protocol = info.get("Protocol", "MsgPack:1")
        if protocol != "MsgPack:1":
            raise ConfigError(
                f"pluginserver {sdef.name}: unsupported protocol {protocol!r} (the stand-in speaks MsgPack:1 only)"
            )
        version = info.get("Version")
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise ConfigError(
                f'Plugin "{name}" cannot be loaded because its VERSION field does not follow the "x.y.z" format'
            )
        priority = info.get("Priority")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ConfigError(
                f'Plugin "{name}" cannot be loaded because its PRIORITY field is not a valid integer number'
            )
        phases = info.get("Phases") or []
        if not isinstance(phases, list) or any(p not in KNOWN_PHASES for p in phases):
            raise ConfigError(f"plugin {name}: invalid Phases {phases!r}")
        if name not in enabled:
            raise ConfigError(
                f"plugin {name} (pluginserver {sdef.name}) is not enabled: "
                "add it to the 'plugins' configuration property (KONG_PLUGINS)"
            )
        if name in self.servers:
            raise ConfigError(f"plugin {name} is served by more than one pluginserver")
        config_schema = validate_plugin_schema(info.get("Schema"), name)
        self.servers[name] = PluginServerInfo(
            name=sdef.name,
            plugin=name,
            socket=sdef.socket,
            priority=priority,
            version=version,
            phases=list(phases),
            config_schema=config_schema,
        )

    def _build_config(self, declarative: dict[str, Any]) -> ConfigState:
        schemas = {n: s.config_schema for n, s in self.servers.items()}
        decl = parse_declarative(declarative, schemas, self._enabled)
        seq = next(self._seq)
        for p in decl.plugins:
            p.config_json = build_config_json(p, seq)
        return ConfigState(decl, seq)

    def start(self) -> KongStandIn:
        settings = read_settings(self.env)
        self.settings: Settings = settings
        for w in settings.warnings:
            self.log("warn", w)
        self._enabled = set(settings.plugins)
        for sdef in settings.servers:
            self._register(sdef, self._query(sdef), self._enabled)
        for item in self._enabled - {"bundled"} - set(self.servers):
            raise ConfigError(f"{item} plugin is enabled but not installed")
        self._config = self._build_config(self.declarative)
        try:
            for sdef in settings.servers:
                info = next(i for i in self.servers.values() if i.name == sdef.name)
                info.rpc = RpcClient(sdef.socket, self.rpc_timeout)
                if sdef.start_cmd:
                    info.process = ServerProcess(sdef.name, sdef.start_cmd, self._child_env(), self._sink, self.log)
                    info.process.start()
            for info in self.servers.values():
                if not wait_for_socket(info.socket, self.socket_wait_timeout):
                    raise ConfigError(
                        f"pluginserver {info.name}: socket {info.socket} did not accept "
                        f"connections within {self.socket_wait_timeout}s; output: "
                        + " | ".join(self.server_output[-10:])
                    )
            self._http = ProxyServer(self, self.listen_port).start()
            self.port = self._http.port
            self.proxy_url = f"http://127.0.0.1:{self.port}"
            self.started = True
        except BaseException:
            self.stop()
            raise
        return self

    def reload(self, declarative: dict[str, Any]) -> None:
        new = self._build_config(declarative)  # ConfigError leaves the old config in place
        self.declarative = declarative
        self._config = new

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None
        for info in self.servers.values():
            if info.process is not None:
                info.process.stop()
            if info.rpc is not None:
                info.rpc.close()
        self.started = False

    def __enter__(self) -> KongStandIn:
        if not self.started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def plugin_status(self, name: str) -> dict[str, Any]:
        res, err = self.servers[name].client.call("plugin.GetStatus")
        if err:
            raise RuntimeError(f"GetStatus failed: {err}")
        assert isinstance(res, dict)
        return res

    def _consumers(self) -> list[Any]:
        return self.config.decl.consumers

    def _next_worker(self) -> _Worker:
        return self.workers[next(self._rr) % len(self.workers)]

    def plugins_for(self, config: ConfigState, route: Route, service: Service | None) -> list[PluginEntity]:
        """Kong's plugins iterator: per plugin name the most specific enabled instance
        (route+service > route > service > global), ordered by descending priority
        (ties: by name; Kong leaves ties unspecified)."""
        best: dict[str, tuple[int, PluginEntity]] = {}
        for p in config.decl.plugins:
            if not p.enabled or "http" not in p.protocols:
                continue
            if p.route is not None and p.route is not route:
                continue
            if p.service is not None and p.service is not service:
                continue
            rank = (2 if p.route is not None else 0) + (1 if p.service is not None else 0)
            if p.name not in best or rank > best[p.name][0]:
                best[p.name] = (rank, p)
        chosen = [p for _, p in best.values()]
        chosen.sort(key=lambda p: (-self.servers[p.name].priority, p.name))
        return chosen

    def run_plugins(self, config: ConfigState, match: Match, state: RequestState, record: RequestRecord) -> Outcome:
        """The rewrite and access phases of a routed request: the first plugin outcome that is not None
        (a response, or "error" for a Lua error), else None (proxy the request)."""
        worker = self._next_worker()
        route = match.route
        plugins = self.plugins_for(config, route, route.service)
        for phase in ("rewrite", "access"):
            for p in plugins:
                if phase not in self.servers[p.name].phases:
                    continue
                if phase == "rewrite" and (p.route is not None or p.service is not None):
                    continue  # Kong runs rewrite before routing: global plugins only
                outcome = self.run_phase(worker, config, p, phase, state, record)
                if outcome is not None:
                    return outcome
        return None

    # ------------------------------------------------------------------ instances + events
    def _get_instance_id(self, worker: _Worker, plugin: PluginEntity, seq: int, record: RequestRecord) -> int:
        info = self.servers[plugin.name]
        with worker.lock:
            cur = worker.instances.get(plugin.id)
            if cur is not None and cur[1] == seq:
                return cur[0]
            res, err = self._rpc(
                info, record, "plugin.StartInstance", {"Name": plugin.name, "Config": plugin.config_json}
            )
            if err is not None or not isinstance(res, dict) or "Id" not in res:
                self.log("err", f"starting instance: {err}")
                raise StartInstanceError(f"starting instance: {err}")
            worker.instances[plugin.id] = (res["Id"], seq)
            if cur is not None:
                self._rpc(info, record, "plugin.CloseInstance", cur[0])  # errors ignored
        return int(res["Id"])

    def _reset_instances(self, plugin: PluginEntity) -> None:
        for w in self.workers:
            with w.lock:
                w.instances.pop(plugin.id, None)

    def _rpc(self, info: PluginServerInfo, record: RequestRecord, method: str, *args: Any) -> tuple[Any, Any]:
        # the client is shared between threads: each call gets the callback that records its frames
        return info.client.call_with(
            lambda direction, frame: record.rpc_transcript.append((direction, frame)), method, *args
        )

    def run_phase(
        self,
        worker: _Worker,
        config: ConfigState,
        plugin: PluginEntity,
        phase: str,
        state: RequestState,
        record: RequestRecord,
        retried: bool = False,
    ) -> Outcome:
        """Runs one plugin's phase handler like mp_rpc.lua handle_event/bridge_loop.

        Returns None (continue), ExitResponse (terminal), or "error" (Lua error -> 500)."""
        info = self.servers[plugin.name]
        try:
            iid = self._get_instance_id(worker, plugin, config.seq, record)
        except StartInstanceError as e:
            record.failures.append(f"{plugin.name}: {e}")
            return "error"
        res, err = self._rpc(info, record, "plugin.HandleEvent", {"InstanceId": iid, "EventName": phase})
        pdk = Pdk(state, phase, self._consumers, self.log)
        event_id = res.get("EventId") if isinstance(res, dict) else None
        while err is None:
            if not isinstance(res, dict):
                err = f"unexpected RPC result {res!r}"
                break
            data = res.get("Data")
            if data == "ret":
                return None
            if not isinstance(data, dict) or "Method" not in data:
                err = f"unexpected event data {data!r}"
                break
            method = data["Method"]
            args = data.get("Args") or []
            if not isinstance(args, list):
                args = [args]
            call = PdkCall(plugin.name, phase, method, list(args))
            record.pdk_calls.append(call)
            if method in TERMINAL_METHODS:
                try:
                    ex = build_exit(method, args, state)
                except LuaError as le:
                    call.result = Raised(str(le))
                    msg = f"{plugin.name}: {method}: {le}"
                    self.log("err", msg)
                    record.failures.append(msg)
                    return "error"
                call.result = None
                return ex  # Kong never steps after exit/error
            try:
                result = pdk.call(method, args)
            except UnknownMethod:
                self.log("err", f"could not find pdk method: {method}")
                result = None
            except LuaError as le:
                call.result = Raised(str(le))
                msg = f"{plugin.name}: {method}: {le}"
                self.log("err", msg)
                record.failures.append(msg)
                return "error"  # abandon the event: no further RPC
            call.result = result
            payload = {"EventId": event_id}
            if result is not None:
                payload["Data"] = result
            res, err = self._rpc(info, record, STEP_METHODS.get(method, "plugin.Step"), payload)
        # RPC-level error (class c)
        if NO_INSTANCE_RE.search(str(err)) and not retried:
            self.log("warn", str(err))
            self._reset_instances(plugin)
            return self.run_phase(worker, config, plugin, phase, state, record, retried=True)
        msg = f"{plugin.name}: pluginserver error in {phase}: {err}"
        self.log("err", msg)
        record.failures.append(msg)
        return None  # fail-open: Kong returns normally from the phase
