"""kong.yaml (decK / DB-less ``_format_version: "3.0"``) -> services, routes, plugins, consumers.

Entity ids that are not given are generated deterministically (uuid5 over the entity's unique key), like
Kong's declarative loader, so a reload of an unchanged file keeps the same plugin ids (only ``__seq__``
changes).  Unsupported entity kinds/fields raise ConfigError (STRICTER than Kong, which would accept
them): the stand-in must never silently ignore configuration.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from .errors import ConfigError
from .normalize import UUID_RE, Errors, format_errors, normalize_record

NS = uuid.UUID("6f1d0c7e-6b6a-4a57-9a2f-3d1c6a0b5e11")
WS_ID = "0dc6f45b-8f8d-40d2-a504-473555ee7b2b"  # fixed default-workspace id
ALL_PROTOCOLS = ["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"]
DEFAULT_PLUGIN_PROTOCOLS = ["grpc", "grpcs", "http", "https"]

TOP_KEYS = {"_format_version", "_transform", "_comment", "_info", "services", "routes", "plugins", "consumers"}
SERVICE_KEYS = {
    "id",
    "name",
    "url",
    "protocol",
    "host",
    "port",
    "path",
    "retries",
    "connect_timeout",
    "write_timeout",
    "read_timeout",
    "tags",
    "enabled",
    "tls_verify",
    "tls_verify_depth",
    "routes",
    "plugins",
    "created_at",
    "updated_at",
}
ROUTE_KEYS = {
    "id",
    "name",
    "paths",
    "methods",
    "hosts",
    "headers",
    "strip_path",
    "preserve_host",
    "protocols",
    "regex_priority",
    "path_handling",
    "https_redirect_status_code",
    "request_buffering",
    "response_buffering",
    "tags",
    "service",
    "plugins",
    "created_at",
    "updated_at",
}
PLUGIN_KEYS = {
    "id",
    "name",
    "instance_name",
    "enabled",
    "protocols",
    "route",
    "service",
    "consumer",
    "tags",
    "config",
    "created_at",
    "updated_at",
}
CONSUMER_KEYS = {"id", "username", "custom_id", "tags", "created_at", "updated_at"}


def load_declarative(path: str) -> dict[str, Any]:
    with open(path, "r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: declarative config must be a map")
    return data


def _uuid5(*parts: object) -> str:
    return str(uuid.uuid5(NS, ":".join(str(p) for p in parts)))


@dataclass
class Service:
    id: str
    name: str | None
    protocol: str
    host: str
    port: int
    path: str | None
    read_timeout: float
    enabled: bool
    raw: dict[str, Any]


@dataclass
class Route:
    id: str
    name: str | None
    service: Service | None
    paths: list[str]
    methods: list[str] | None
    hosts: list[str] | None
    headers: dict[str, list[str]] | None
    strip_path: bool
    preserve_host: bool
    protocols: list[str]
    regex_priority: int
    https_redirect_status_code: int
    order: int
    raw: dict[str, Any]
    compiled: list[tuple[str, Any, str]] = field(default_factory=list)  # [(kind, prefix or re.Pattern, original)]


@dataclass
class PluginEntity:
    id: str
    name: str
    enabled: bool
    protocols: list[str]
    route: Route | None
    service: Service | None
    instance_name: str | None
    tags: list[str] | None
    config: dict[str, Any]  # normalised config
    config_json: str = ""  # the StartInstance Config string (set by build_config_json)


@dataclass
class Consumer:
    id: str
    username: str | None
    custom_id: str | None
    tags: list[str] | None

    def as_entity(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "created_at": 1700000000, "type": 0}
        if self.username is not None:
            d["username"] = self.username
        if self.custom_id is not None:
            d["custom_id"] = self.custom_id
        if self.tags is not None:
            d["tags"] = list(self.tags)
        return d


@dataclass
class DeclarativeConfig:
    services: list[Service]
    routes: list[Route]
    plugins: list[PluginEntity]
    consumers: list[Consumer]


def _check_keys(where: str, d: object, allowed: set[str]) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a record")
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{where}: {k}: unknown field")


def _bool(where: str, v: object, default: bool) -> bool:
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: expected a boolean")
    return v


def _str_list(where: str, v: object) -> list[str] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{where}: expected an array of strings")
    return list(v)


def _parse_service(s: dict[str, Any], idx: int) -> Service:
    where = f"services[{idx}]"
    _check_keys(where, s, SERVICE_KEYS)
    name = s.get("name")
    if "url" in s:
        for k in ("protocol", "host", "port", "path"):
            if k in s:
                raise ConfigError(f"{where}: url and {k} are mutually exclusive")
        u = urllib.parse.urlsplit(s["url"])
        protocol, host, port, path = u.scheme, u.hostname, u.port, u.path or None
        if u.query or u.fragment:
            raise ConfigError(f"{where}.url: query/fragment not allowed")
    else:
        protocol = s.get("protocol", "http")
        host, port, path = s.get("host"), s.get("port"), s.get("path")
    if protocol not in ("http", "https"):
        raise ConfigError(f"{where}.protocol: stand-in only proxies http/https services (got {protocol!r})")
    if not host:
        raise ConfigError(f"{where}.host: required field missing")
    if port is None:
        port = 443 if protocol == "https" else 80
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"{where}.port: value should be between 0 and 65535")
    if path is not None and not path.startswith("/"):
        raise ConfigError(f"{where}.path: should start with: /")
    sid = s.get("id") or _uuid5("services", name or idx)
    read_timeout = s.get("read_timeout", 60000)
    return Service(
        id=sid,
        name=name,
        protocol=protocol,
        host=host.lower(),
        port=port,
        path=path,
        read_timeout=read_timeout / 1000.0,
        enabled=_bool(where + ".enabled", s.get("enabled"), True),
        raw=s,
    )


def _parse_route(r: dict[str, Any], idx: int, service: Service | None, order: int) -> Route:
    where = f"routes[{idx}]" if service is None else f"services({service.name}).routes[{idx}]"
    _check_keys(where, r, ROUTE_KEYS)
    name = r.get("name")
    paths = _str_list(where + ".paths", r.get("paths")) or []
    methods = _str_list(where + ".methods", r.get("methods"))
    hosts = _str_list(where + ".hosts", r.get("hosts"))
    headers = r.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            raise ConfigError(f"{where}.headers: expected a map")
        headers = {k.lower(): [v] if isinstance(v, str) else list(v) for k, v in headers.items()}
        if "host" in headers:
            raise ConfigError(
                f"{where}.headers: cannot contain 'host' header, which must be specified in the 'hosts' attribute"
            )
    protocols = _str_list(where + ".protocols", r.get("protocols")) or ["http", "https"]
    for p in protocols:
        if p not in ALL_PROTOCOLS:
            raise ConfigError(f"{where}.protocols: expected one of: " + ", ".join(ALL_PROTOCOLS))
    if r.get("path_handling", "v0") != "v0":
        raise ConfigError(f"{where}.path_handling: stand-in only implements Kong's default 'v0'")
    if not (paths or methods or hosts or headers):
        raise ConfigError(f"{where}: must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'")
    compiled: list[tuple[str, Any, str]] = []
    for p in paths:
        if p.startswith("~"):
            try:
                compiled.append(("regex", re.compile(p[1:]), p))
            except re.error as e:
                raise ConfigError(f"{where}.paths: invalid regex: {p} ({e})") from None
        elif p.startswith("/"):
            compiled.append(("prefix", p, p))
        else:
            raise ConfigError(f"{where}.paths: should start with: / (fixed path) or ~/ (regex path)")
    rid = r.get("id") or _uuid5("routes", name or f"{service.name if service else ''}:{idx}:{order}")
    return Route(
        id=rid,
        name=name,
        service=service,
        paths=paths,
        methods=[m.upper() for m in methods] if methods else None,
        hosts=[h.lower() for h in hosts] if hosts else None,
        headers=headers,
        strip_path=_bool(where + ".strip_path", r.get("strip_path"), True),
        preserve_host=_bool(where + ".preserve_host", r.get("preserve_host"), False),
        protocols=protocols,
        regex_priority=int(r.get("regex_priority", 0)),
        https_redirect_status_code=int(r.get("https_redirect_status_code", 426)),
        order=order,
        raw=r,
        compiled=compiled,
    )


_E = TypeVar("_E")


def _resolve(where: str, ref: object, by_name: dict[str, _E], kind: str) -> _E:
    """An entity reference (a name/id string or a ``{name:}``/``{id:}`` table) -> the entity it names."""
    key = ref.get("name") or ref.get("id") if isinstance(ref, dict) else ref
    if key not in by_name:
        raise ConfigError(f"{where}: unknown {kind} reference {ref!r}")
    return by_name[key]


def parse_declarative(
    data: dict[str, Any], schemas: dict[str, dict[str, Any]], plugin_names_enabled: Collection[str]
) -> DeclarativeConfig:
    """``schemas``: plugin name -> config record field def (validated metaschema)."""
    if not isinstance(data, dict):
        raise ConfigError("declarative config must be a map")
    for k in data:
        if k not in TOP_KEYS:
            raise ConfigError(f"declarative config: {k}: unknown field")
    fv = data.get("_format_version")
    if fv is None:
        raise ConfigError("declarative config: _format_version: required field missing")
    if str(fv) not in ("3.0", "2.1", "1.1"):
        raise ConfigError(f"declarative config: _format_version: expected one of: 1.1, 2.1, 3.0 (got {fv!r})")

    services: list[Service] = []
    routes: list[Route] = []
    consumers: list[Consumer] = []
    # (plugin entry, its service, its route, where it was declared)
    raw_plugins: list[tuple[Any, Service | None, Route | None, str]] = []
    by_service_name: dict[str, Service] = {}
    by_route_name: dict[str, Route] = {}
    order = 0
    for i, s in enumerate(data.get("services") or []):
        service = _parse_service(s, i)
        services.append(service)
        if service.name:
            by_service_name[service.name] = service
        by_service_name[service.id] = service
        for j, r in enumerate(s.get("routes") or []):
            if "service" in (r or {}):
                raise ConfigError(f"services[{i}].routes[{j}].service: unknown field")
            route = _parse_route(r, j, service, order)
            order += 1
            routes.append(route)
            for p in r.get("plugins") or []:
                raw_plugins.append((p, None, route, f"services[{i}].routes[{j}].plugins"))
        for p in s.get("plugins") or []:
            raw_plugins.append((p, service, None, f"services[{i}].plugins"))
    for j, r in enumerate(data.get("routes") or []):
        svc: Service | None = None
        ref = (r or {}).get("service")
        if ref is not None:
            svc = _resolve(f"routes[{j}].service", ref, by_service_name, "service")
        route = _parse_route(r, j, svc, order)
        order += 1
        routes.append(route)
        for p in r.get("plugins") or []:
            raw_plugins.append((p, None, route, f"routes[{j}].plugins"))
    for r in routes:
        if r.name:
            if r.name in by_route_name:
                raise ConfigError(f"routes: UNIQUE violation detected on '{{name=\"{r.name}\"}}'")
            by_route_name[r.name] = r
        by_route_name[r.id] = r
    for i, p in enumerate(data.get("plugins") or []):
        raw_plugins.append((p, None, None, f"plugins[{i}]"))

    for i, c in enumerate(data.get("consumers") or []):
        where = f"consumers[{i}]"
        _check_keys(where, c, CONSUMER_KEYS)
        if not c.get("username") and not c.get("custom_id"):
            raise ConfigError(f"{where}: at least one of these fields must be non-empty: 'custom_id', 'username'")
        cid = c.get("id") or _uuid5("consumers", c.get("username") or "", c.get("custom_id") or "")
        if not UUID_RE.match(cid):
            raise ConfigError(f"{where}.id: expected a valid UUID")
        consumers.append(Consumer(id=cid, username=c.get("username"), custom_id=c.get("custom_id"), tags=c.get("tags")))

    plugins: list[PluginEntity] = []
    seen_keys: set[tuple[str, str | None, str | None]] = set()
    for p, p_service, p_route, where in raw_plugins:
        _check_keys(where, p, PLUGIN_KEYS)
        # explicit service:/route: references (top-level or nested)
        if p.get("service") is not None:
            p_service = _resolve(f"{where}.service", p["service"], by_service_name, "service")
        if p.get("route") is not None:
            p_route = _resolve(f"{where}.route", p["route"], by_route_name, "route")
        if p.get("consumer") is not None:
            raise ConfigError(f"{where}.consumer: consumer-scoped plugins are not supported by the stand-in")
        name = p.get("name")
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name: required field missing")
        if name not in schemas:
            if name in plugin_names_enabled or "bundled" in plugin_names_enabled:
                raise ConfigError(
                    f"{where}.name: plugin '{name}' is not served by any configured pluginserver "
                    "(the stand-in cannot run Lua plugins)"
                )
            raise ConfigError(
                f"{where}.name: plugin '{name}' not enabled; add it to the 'plugins' configuration property"
            )
        if name not in plugin_names_enabled:
            raise ConfigError(
                f"{where}.name: plugin '{name}' not enabled; add it to the 'plugins' configuration property"
            )
        protocols = p.get("protocols", DEFAULT_PLUGIN_PROTOCOLS)
        if not isinstance(protocols, list) or not protocols or any(x not in ALL_PROTOCOLS for x in protocols):
            raise ConfigError(f"{where}.protocols: expected one of: " + ", ".join(ALL_PROTOCOLS))
        pid = p.get("id") or _uuid5(
            "plugins", name, p_route.id if p_route else "", p_service.id if p_service else "", ""
        )
        if not isinstance(pid, str) or not UUID_RE.match(pid):
            raise ConfigError(f"{where}.id: expected a valid UUID")
        key = (name, p_route.id if p_route else None, p_service.id if p_service else None)
        if key in seen_keys:
            raise ConfigError(
                f'{where}: UNIQUE violation detected on \'{{consumer=null,name="{name}",'
                f"route={key[1]},service={key[2]}}}'"
            )
        seen_keys.add(key)
        errors: Errors = []
        raw_conf = p.get("config")
        if raw_conf is None:
            raw_conf = {}
        conf = normalize_record(schemas[name]["fields"], raw_conf, "config", errors)
        if errors:
            raise ConfigError(f"{where} ({name}): schema violation: {format_errors(errors)}")
        instance_name = p.get("instance_name")
        if instance_name is not None and not isinstance(instance_name, str):
            raise ConfigError(f"{where}.instance_name: expected a string")
        plugins.append(
            PluginEntity(
                id=pid,
                name=name,
                enabled=_bool(where + ".enabled", p.get("enabled"), True),
                protocols=list(protocols),
                route=p_route,
                service=p_service,
                instance_name=instance_name,
                tags=p.get("tags"),
                config=conf,
            )
        )
    return DeclarativeConfig(services=services, routes=routes, plugins=plugins, consumers=consumers)


def cjson_encode(obj: object) -> str:
    """Compact JSON like lua-cjson (which also escapes '/' as '\\/')."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


def build_config_json(plugin: PluginEntity, seq: int) -> str:
    conf = dict(plugin.config)
    if plugin.route is not None:
        conf["route_id"] = plugin.route.id
    if plugin.service is not None:
        conf["service_id"] = plugin.service.id
    conf["plugin_instance_name"] = plugin.instance_name
    conf["__plugin_id"] = plugin.id
    conf["__ws_id"] = WS_ID
    conf["__key__"] = "plugins:%s:%s:%s::%s" % (
        plugin.name,
        plugin.route.id if plugin.route else "",
        plugin.service.id if plugin.service else "",
        WS_ID,
    )
    conf["__seq__"] = seq
    return cjson_encode(conf)
