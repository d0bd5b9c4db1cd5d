"""KONG_* environment settings -> plugin-server definitions (Kong 3.9+ semantics).

Mirrors kong/conf_loader/init.lua (3.9+) and kong/runloop/plugin_servers/process.lua:
  * KONG_PLUGINSERVER_NAMES is a comma list; each name is lower-cased and ``-`` becomes ``_``
    to form the key prefix ``pluginserver_<N>`` (env ``KONG_PLUGINSERVER_<N>_*``).
  * defaults: socket ``<prefix>/<name>.socket``; start ``/usr/local/bin/<name>`` if it exists;
    query ``/usr/local/bin/<name> -dump`` if it exists.
  * no query command is a fatal error ("query_command undefined for pluginserver <name>").

And the one nginx setting the stand-in models: ``KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE`` (Kong's
``nginx_http_client_body_buffer_size``, default ``8k`` in kong/templates/kong_defaults.lua), which Kong
writes as ``client_body_buffer_size`` into the http block of nginx-kong.conf; nginx parses it with
``ngx_parse_size`` and refuses to start on an invalid value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_PREFIX = "/usr/local/kong"
BODY_BUFFER_ENV = "KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE"
DEFAULT_BODY_BUFFER_SIZE = "8k"  # kong_defaults.lua: nginx_http_client_body_buffer_size = 8k
_NGINX_SIZE = re.compile(r"([0-9]+)([kKmM]?)")


@dataclass
class ServerDef:
    name: str
    socket: str
    start_cmd: str | None
    query_cmd: str


@dataclass
class Settings:
    prefix: str
    plugins: list[str]  # KONG_PLUGINS items (may include "bundled")
    servers: list[ServerDef]
    warnings: list[str]
    client_body_buffer_size: int = 8 * 1024  # bytes nginx keeps a request body in memory for


def parse_nginx_size(value: str) -> int:
    """nginx's ``ngx_parse_size`` (src/core/ngx_parse.c): decimal digits with an optional ``k``/``K``
    (x1024) or ``m``/``M`` (x1024*1024) suffix; anything else (a sign, a space, ``g``, a fraction)
    is an invalid value."""
    match = _NGINX_SIZE.fullmatch(value)
    if match is None:
        raise ValueError(value)
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]


def read_body_buffer_size(env: dict[str, str]) -> int:
    value = env.get(BODY_BUFFER_ENV, DEFAULT_BODY_BUFFER_SIZE).strip()  # nginx splits arguments on spaces
    try:
        return parse_nginx_size(value)
    except ValueError:
        raise ConfigError(
            f'"client_body_buffer_size" directive invalid value {value!r} (from {BODY_BUFFER_ENV}): nginx does not start'
        ) from None


def _split_list(value: str) -> list[str]:
    # Kong's conf loader splits comma lists and trims whitespace around items.
    return [item.strip() for item in value.split(",") if item.strip()]


def env_key_for(name: str) -> str:
    return "KONG_PLUGINSERVER_" + name.lower().replace("-", "_").upper()


def read_settings(env: dict[str, str], *, file_exists: Callable[[str], bool] = os.path.exists) -> Settings:
    prefix = env.get("KONG_PREFIX") or DEFAULT_PREFIX
    plugins = _split_list(env.get("KONG_PLUGINS", "bundled"))
    warnings: list[str] = []
    servers: list[ServerDef] = []
    names = _split_list(env.get("KONG_PLUGINSERVER_NAMES", ""))
    seen = set()
    for raw_name in names:
        name = raw_name.lower()
        key = env_key_for(name)
        if key in seen:
            raise ConfigError(f"duplicate pluginserver name: {name}")
        seen.add(key)
        socket = env.get(key + "_SOCKET") or os.path.join(prefix, f"{name}.socket")
        start_cmd = env.get(key + "_START_CMD")
        if not start_cmd and file_exists(f"/usr/local/bin/{name}"):
            start_cmd = f"/usr/local/bin/{name}"
        query_cmd = env.get(key + "_QUERY_CMD")
        if not query_cmd and file_exists(f"/usr/local/bin/{name}"):
            query_cmd = f"/usr/local/bin/{name} -dump"
        if not query_cmd:
            raise ConfigError(f"query_command undefined for pluginserver {name}")
        if not start_cmd:
            warnings.append(f"start_command undefined for pluginserver {name}; assuming external process management")
        servers.append(ServerDef(name=name, socket=socket, start_cmd=start_cmd, query_cmd=query_cmd))
    return Settings(
        prefix=prefix,
        plugins=plugins,
        servers=servers,
        warnings=warnings,
        client_body_buffer_size=read_body_buffer_size(env),
    )
