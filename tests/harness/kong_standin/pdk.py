"""PDK model: answers ``kong.*`` calls for one request with Kong 3.9 semantics (kong/pdk/*.lua).

Three outcomes for a call (reference §2.5 / §4.D.12):
  * a value (or ``None``) that is sent back with a ``Step*`` RPC;
  * ``UnknownMethod``: the method does not exist in Kong's PDK -> Kong logs
    "could not find pdk method: X" and steps with no Data;
  * ``LuaError``: Kong's Lua function calls ``error()`` -> the event is abandoned, the request gets a 500.
Methods that exist in Kong but are not modelled raise ``NotModelled`` (treated like a LuaError, so a test
can never silently pass on an unmodelled call: STRICTER than Kong).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
import urllib.parse
from dataclasses import dataclass, field

from . import uri
from .declarative import cjson_encode
from .normalize import UUID_RE

KONG_VERSION = "3.9.1"
SERVER_HEADER = f"kong/{KONG_VERSION}"
CLIENT_BODY_BUFFER_SIZE = 8192  # Kong's default nginx_http_client_body_buffer_size (8k)
MAX_REQ_HEADERS_DEFAULT = 100

# Every function of Kong's PDK (from kong-pdk's generated stubs, Kong 3.4.x) plus plugin.lua's exposed_api.
KNOWN_METHODS = set(
    """
kong.client.authenticate kong.client.get_consumer kong.client.get_credential kong.client.get_forwarded_ip
kong.client.get_forwarded_port kong.client.get_ip kong.client.get_port kong.client.get_protocol
kong.client.load_consumer kong.client.tls.disable_session_reuse kong.client.tls.get_full_client_certificate_chain
kong.client.tls.request_client_certificate kong.client.tls.set_client_verify kong.cluster.get_id
kong.ctx.shared.get kong.ctx.shared.set kong.enterprise_edition.jwe.decode kong.enterprise_edition.jwe.decrypt
kong.enterprise_edition.jwe.encrypt kong.ip.is_trusted kong.log kong.log.alert kong.log.crit kong.log.debug
kong.log.deprecation kong.log.err kong.log.info kong.log.notice kong.log.serialize kong.log.set_serialize_value
kong.log.warn kong.log.inspect kong.nginx.get_ctx kong.nginx.get_statistics kong.nginx.get_subsystem
kong.nginx.get_tls1_version_str kong.nginx.get_var kong.nginx.req_start_time kong.nginx.set_ctx
kong.nginx.shared.get kong.nginx.shared.set kong.node.get_hostname kong.node.get_id kong.node.get_memory_stats
kong.plugin.get_id kong.request.get_body kong.request.get_forwarded_host kong.request.get_forwarded_path
kong.request.get_forwarded_port kong.request.get_forwarded_prefix kong.request.get_forwarded_scheme
kong.request.get_header kong.request.get_headers kong.request.get_host kong.request.get_http_version
kong.request.get_method kong.request.get_path kong.request.get_path_with_query kong.request.get_port
kong.request.get_query kong.request.get_query_arg kong.request.get_raw_body kong.request.get_raw_path
kong.request.get_raw_query kong.request.get_scheme kong.request.get_start_time kong.request.get_uri_captures
kong.response.add_header kong.response.clear_header kong.response.error kong.response.exit
kong.response.get_header kong.response.get_headers kong.response.get_source kong.response.get_status
kong.response.set_header kong.response.set_headers kong.response.set_status kong.router.get_route
kong.router.get_service kong.service.request.add_header kong.service.request.clear_header
kong.service.request.disable_tls kong.service.request.enable_buffering kong.service.request.set_body
kong.service.request.set_header kong.service.request.set_headers kong.service.request.set_method
kong.service.request.set_path kong.service.request.set_query kong.service.request.set_raw_body
kong.service.request.set_raw_query kong.service.request.set_scheme kong.service.response.get_body
kong.service.response.get_header kong.service.response.get_headers kong.service.response.get_raw_body
kong.service.response.get_status kong.service.set_target kong.service.set_tls_verify
kong.service.set_tls_verify_depth kong.service.set_upstream kong.vault.flush kong.vault.get
kong.vault.is_reference kong.vault.parse_reference kong.vault.update
""".split()
)

TERMINAL_METHODS = {"kong.response.exit", "kong.response.error"}

# mp_rpc.lua get_step_method / by_pdk_method
STEP_METHODS = {
    "kong.client.get_credential": "plugin.StepCredential",
    "kong.client.authenticate": "plugin.StepCredential",
    "kong.client.get_consumer": "plugin.StepConsumer",
    "kong.client.load_consumer": "plugin.StepConsumer",
    "kong.node.get_memory_stats": "plugin.StepMemoryStats",
    "kong.router.get_route": "plugin.StepRoute",
    "kong.router.get_service": "plugin.StepService",
    "kong.request.get_query": "plugin.StepMultiMap",
    "kong.request.get_headers": "plugin.StepMultiMap",
    "kong.response.get_headers": "plugin.StepMultiMap",
    "kong.service.response.get_headers": "plugin.StepMultiMap",
}
MULTIMAP_METHODS = {m for m, s in STEP_METHODS.items() if s == "plugin.StepMultiMap"}

LOG_LEVELS = {
    "kong.log": "notice",
    "kong.log.debug": "debug",
    "kong.log.info": "info",
    "kong.log.notice": "notice",
    "kong.log.warn": "warn",
    "kong.log.err": "err",
    "kong.log.crit": "crit",
    "kong.log.alert": "alert",
    "kong.log.deprecation": "warn",
    "kong.log.inspect": "debug",
}

HTTP_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    407: "Proxy authentication required",
    408: "Request timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length required",
    412: "Precondition failed",
    413: "Payload too large",
    414: "URI too long",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    417: "Expectation failed",
    418: "I'm a teapot",
    421: "Misdirected request",
    422: "Unprocessable entity",
    423: "Locked",
    424: "Failed dependency",
    425: "Too early",
    426: "Upgrade required",
    428: "Precondition required",
    429: "Too many requests",
    431: "Request header fields too large",
    451: "Unavailable for legal reasons",
    494: "Request header or cookie too large",
    500: "An unexpected error occurred",
    501: "Not implemented",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
    505: "HTTP version not supported",
}

ERROR_TEMPLATES = {
    "json": ("application/json; charset=utf-8", '{\n  "message":"%s",\n  "request_id":"%s"\n}'),
    "html": (
        "text/html; charset=utf-8",
        '<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>Error</title>\n'
        "  </head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n"
        "  </body>\n</html>\n",
    ),
    "xml": (
        "application/xml; charset=utf-8",
        '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>%s</message>\n'
        "  <requestid>%s</requestid>\n</error>\n",
    ),
    "text": ("text/plain; charset=utf-8", "%s\nrequest_id: %s\n"),
}

VALID_METHODS = {
    "GET",
    "HEAD",
    "PUT",
    "POST",
    "DELETE",
    "OPTIONS",
    "MKCOL",
    "COPY",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "LOCK",
    "UNLOCK",
    "PATCH",
    "TRACE",
}


class LuaError(Exception):
    """Kong's Lua PDK function called error()."""


class NotModelled(LuaError):
    """The method exists in Kong but the stand-in does not model it."""


class UnknownMethod(Exception):
    pass


@dataclass
class Raised:
    """PdkCall.result marker for a call on which Kong raised a Lua error."""

    message: str

    def __repr__(self):
        return f"<lua error: {self.message}>"


@dataclass
class ExitResponse:
    status: int
    body: bytes
    headers: list  # [(name, value)]
    source: str  # "exit" / "error"

    def as_dict(self):
        return {"status": self.status, "body": self.body, "headers": list(self.headers)}


def error_template(accept: str | None, message: str, request_id: str):
    """kong.tools.http get_response_type + ERROR_TEMPLATES (APPROXIMATION of the Accept parsing)."""
    kind = "json"
    if accept:
        for item in accept.split(","):
            mime = item.split(";")[0].strip().lower()
            if "json" in mime:
                kind = "json"
                break
            if mime == "text/html":
                kind = "html"
                break
            if mime in ("application/xml", "text/xml"):
                kind = "xml"
                break
            if mime == "text/plain":
                kind = "text"
                break
    ctype, tpl = ERROR_TEMPLATES[kind]
    if kind == "json":
        message = json.dumps(message)[1:-1]
    return ctype, (tpl % (message, request_id)).encode("utf-8")


def lua_type(v) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, (str, bytes)):
        return "string"
    if isinstance(v, (list, dict)):
        return "table"
    return "userdata"


def lua_tostring(v) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, dict)):
        return "table: 0x%012x" % (id(v) & 0xFFFFFFFFFFFF)
    return str(v)


def to_lua_result(v):
    """Shape a value the way it crosses Lua -> msgpack: empty tables become empty arrays."""
    if isinstance(v, dict):
        if not v:
            return []
        return {k: to_lua_result(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_lua_result(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def fix_mmap(d):
    """mp_rpc.lua fix_mmap: string -> [string], true -> [], empty table -> empty map."""
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, str):
            out[k] = [v]
        elif v is True:
            out[k] = []
        elif isinstance(v, list):
            out[k] = v
        else:
            out[k] = v
    return out


def _validate_header(name, value, allow_nil=False):
    """pdk/private/checks.lua validate_header."""
    if not isinstance(name, str):
        raise LuaError("invalid header name %r: got %s, expected string" % (name, lua_type(name)))
    if value is None and allow_nil:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return lua_tostring(value)
    if isinstance(value, list):
        for v in value:
            if not isinstance(v, str):
                raise LuaError("invalid header value in array %r: got %s, expected string" % (name, lua_type(v)))
        return list(value)
    raise LuaError(
        "invalid header value for %r: got %s, expected array of string, string, number or boolean"
        % (name, lua_type(value))
    )


def _validate_headers_table(headers):
    if not isinstance(headers, dict):
        if headers == []:
            return {}
        raise LuaError("headers must be a table")
    out = {}
    for k, v in headers.items():
        out[k] = _validate_header(k, v)
    return out


def _norm_name(name: str) -> str:
    return name.lower().replace("_", "-")


def parse_args(query: str, max_args: int = 100):
    """ngx.req.get_uri_args semantics: 'a' -> true, 'a=' -> '', repeated -> list; + is space."""
    args: dict = {}
    count = 0
    if not query:
        return args
    for part in query.split("&"):
        if part == "":
            continue
        if count >= max_args:
            break
        count += 1
        if "=" in part:
            k, v = part.split("=", 1)
            v = urllib.parse.unquote_plus(v)
        else:
            k, v = part, True
        k = urllib.parse.unquote_plus(k)
        if k == "":
            continue
        if k in args:
            cur = args[k]
            if isinstance(cur, list):
                cur.append(v)
            else:
                args[k] = [cur, v]
        else:
            args[k] = v
    return args


def encode_args(args) -> str:
    """ngx.encode_args (APPROXIMATION: keys sorted like Kong's kong.service.request.set_query)."""
    parts = []
    for k in sorted(args):
        v = args[k]
        vals = v if isinstance(v, list) else [v]
        for x in vals:
            if x is True:
                parts.append(urllib.parse.quote(str(k), safe=""))
            elif x is False:
                continue
            else:
                parts.append(urllib.parse.quote(str(k), safe="") + "=" + urllib.parse.quote(lua_tostring(x), safe=""))
    return "&".join(parts)


def ip_in(ip: str, cidrs) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for c in cidrs:
        try:
            if addr in ipaddress.ip_network(c, strict=False):
                return True
        except ValueError:
            continue
    return False


class WireBytes(bytes):
    """A Lua string as nginx holds it: raw bytes, which Kong packs as msgpack *str* whether or not
    they are UTF-8 (lua-MessagePack). Request header values are sent to plugins this way, so a
    plugin server that decodes strictly sees exactly what it would see behind Kong."""


def wire(value: str) -> WireBytes:
    """Header strings are kept one character per byte (http.server decodes them as latin-1)."""
    return WireBytes(value.encode("latin-1", "replace"))


def from_lua(value: str) -> str:
    """A string a plugin sent (UTF-8 text) in the one-character-per-byte form headers are kept in."""
    return value.encode("utf-8", "surrogateescape").decode("latin-1")


@dataclass
class RequestState:
    """Everything Kong knows about one request while running plugin phases."""

    request_id: str
    method: str
    raw_uri: str  # request-target as received (path?query)
    http_version: float
    headers: list  # [[name, value]] in received order (mutated by service.request.*)
    body: bytes
    client_ip: str
    client_port: int
    server_port: int
    trusted_ips: list
    route: object = None  # declarative.Route
    service: object = None  # declarative.Service
    matched_prefix: str | None = None
    uri_captures: dict = field(default_factory=lambda: {"unnamed": [], "named": {}})
    ctx_shared: dict = field(default_factory=dict)
    nginx_ctx: dict = field(default_factory=dict)
    response_headers: list = field(default_factory=list)  # pending downstream headers [(name, value)]
    authenticated_consumer: object = None
    authenticated_credential: object = None
    # service request mutations
    upstream_path: str | None = None
    upstream_query: str | None = None
    upstream_method: str | None = None
    upstream_body: bytes | None = None
    upstream_host: str | None = None  # set by kong.service.request.set_header("host", ...)
    upstream_scheme: str | None = None
    serialize_values: dict = field(default_factory=dict)
    start_time: float = field(default_factory=time.time)

    # --- derived values -------------------------------------------------
    @property
    def raw_path(self) -> str:
        return self.raw_uri.split("?", 1)[0]

    @property
    def raw_query(self) -> str:
        return self.raw_uri.split("?", 1)[1] if "?" in self.raw_uri else ""

    @property
    def path(self) -> str:
        return uri.normalize(self.raw_path, merge_slashes=True)

    @property
    def trusted(self) -> bool:
        return ip_in(self.client_ip, self.trusted_ips)

    def get_header(self, name: str):
        n = _norm_name(name)
        for k, v in self.headers:
            if _norm_name(k) == n:
                return v
        return None

    @property
    def host(self) -> str:
        """nginx $host: Host header, lower-cased, without port (or the server name)."""
        h = self.get_header("host")
        if not h:
            return "kong"
        h = h.strip().lower()
        if h.startswith("["):
            return h.split("]", 1)[0] + "]"
        return h.split(":", 1)[0]


class Pdk:
    """Dispatches PDK calls for one request. ``kong`` is the owning KongStandIn (consumers, node id)."""

    def __init__(self, kong, state: RequestState, plugin, phase: str):
        self.kong = kong
        self.s = state
        self.plugin = plugin
        self.phase = phase

    # -----------------------------------------------------------------
    def call(self, method: str, args: list):
        if method not in KNOWN_METHODS:
            raise UnknownMethod(method)
        fn = getattr(self, "m_" + method.replace(".", "_"), None)
        if fn is None:
            raise NotModelled(f"the Kong stand-in does not model PDK method {method}")
        result = fn(*(list(args) + [None] * 8))
        if method in MULTIMAP_METHODS:
            return fix_mmap(result) if result is not None else None
        return to_lua_result(result)

    def check_phase(self, allowed, name):
        if self.phase not in allowed:
            raise LuaError("function cannot be called in %s phase (only in: %s)" % (self.phase, ", ".join(allowed)))

    # ---------------- kong.request ----------------
    def m_kong_request_get_header(self, name, *_):
        if not isinstance(name, str):
            raise LuaError("header name must be a string")
        value = self.s.get_header(name)
        return wire(value) if isinstance(value, str) else value

    def _headers_mmap(self, max_headers, headers):
        if max_headers is None:
            max_headers = MAX_REQ_HEADERS_DEFAULT
        else:
            if lua_type(max_headers) != "number":
                raise LuaError("max_headers must be a number")
            if max_headers < 1:
                raise LuaError("max_headers must be >= 1")
            if max_headers > 1000:
                raise LuaError("max_headers must be <= 1000")
        out: dict = {}
        for i, (k, v) in enumerate(headers):
            if i >= max_headers:
                break  # truncated silently (the 2nd return value never reaches Python)
            out.setdefault(k.lower(), []).append(wire(v) if isinstance(v, str) else v)
        return out

    def m_kong_request_get_headers(self, max_headers, *_):
        return self._headers_mmap(max_headers, self.s.headers)

    def m_kong_request_get_method(self, *_):
        return self.s.method

    def m_kong_request_get_path(self, *_):
        return self.s.path

    def m_kong_request_get_raw_path(self, *_):
        return self.s.raw_path

    def m_kong_request_get_path_with_query(self, *_):
        return self.s.raw_uri

    def m_kong_request_get_raw_query(self, *_):
        return self.s.raw_query

    def m_kong_request_get_query(self, max_args, *_):
        if max_args is None:
            max_args = 100
        elif lua_type(max_args) != "number":
            raise LuaError("max_args must be a number")
        elif max_args < 1:
            raise LuaError("max_args must be >= 1")
        elif max_args > 1000:
            raise LuaError("max_args must be <= 1000")
        return parse_args(self.s.raw_query, int(max_args))

    def m_kong_request_get_query_arg(self, name, *_):
        if not isinstance(name, str):
            raise LuaError("query argument name must be a string")
        v = parse_args(self.s.raw_query).get(name)
        return v[0] if isinstance(v, list) else v

    def m_kong_request_get_scheme(self, *_):
        return "http"

    def m_kong_request_get_host(self, *_):
        return self.s.host

    def m_kong_request_get_port(self, *_):
        return self.s.server_port

    def m_kong_request_get_http_version(self, *_):
        return self.s.http_version

    def m_kong_request_get_start_time(self, *_):
        return int(self.s.start_time * 1000)

    def m_kong_request_get_uri_captures(self, *_):
        return self.s.uri_captures

    def m_kong_request_get_raw_body(self, *_):
        self.check_phase(("rewrite", "access", "response", "admin_api"), "get_raw_body")
        body = self.s.body
        if len(body) > CLIENT_BODY_BUFFER_SIZE:
            # Kong: the body was buffered to a file -> returns nil, "request body did not fit ..."
            return None
        return body

    def m_kong_request_get_body(self, mimetype, max_args, *_):
        self.check_phase(("rewrite", "access", "response", "admin_api"), "get_body")
        ctype = mimetype or (self.s.get_header("content-type") or "")
        ctype = ctype.split(";")[0].strip().lower()
        body = self.m_kong_request_get_raw_body()
        if body is None:
            return None
        if ctype == "application/json":
            try:
                return json.loads(body) if body else None
            except ValueError:
                return None
        if ctype == "application/x-www-form-urlencoded":
            return parse_args(body.decode("utf-8", "replace"), int(max_args or 100))
        if ctype.startswith("multipart/"):
            raise NotModelled("kong.request.get_body for multipart bodies is not modelled")
        return None

    def m_kong_request_get_forwarded_scheme(self, *_):
        if self.s.trusted:
            v = self.s.get_header("x-forwarded-proto")
            if v:
                return v.lower()
        return "http"

    def m_kong_request_get_forwarded_host(self, *_):
        if self.s.trusted:
            h = self.s.get_header("x-forwarded-host")
            if h:
                if "@" in h:
                    h = h.split("@", 1)[1]
                return h.split(":", 1)[0].lower()
        return self.s.host

    def m_kong_request_get_forwarded_port(self, *_):
        if self.s.trusted:
            p = _tonumber(self.s.get_header("x-forwarded-port"))
            if p is not None and 1 <= p <= 65535:
                return p
            h = self.s.get_header("x-forwarded-host")
            if h:
                if "@" in h:
                    h = h.split("@", 1)[1]
                if ":" in h:
                    p = _tonumber(h.split(":", 1)[1])
                    if p is not None and 1 <= p <= 65535:
                        return p
        return self.s.server_port

    def m_kong_request_get_forwarded_path(self, *_):
        if self.s.trusted:
            p = self.s.get_header("x-forwarded-path")
            if p:
                return p
        return self.s.path

    def m_kong_request_get_forwarded_prefix(self, *_):
        if self.s.trusted:
            p = self.s.get_header("x-forwarded-prefix")
            if p:
                return p
        return self.s.matched_prefix  # var.upstream_x_forwarded_prefix

    # ---------------- kong.client ----------------
    def m_kong_client_get_ip(self, *_):
        return self.s.client_ip

    def m_kong_client_get_forwarded_ip(self, *_):
        # nginx realip (real_ip_header X-Real-IP, set_real_ip_from = trusted_ips)
        if self.s.trusted:
            v = self.s.get_header("x-real-ip")
            if v:
                return v.strip()
        return self.s.client_ip

    def m_kong_client_get_port(self, *_):
        return self.s.client_port

    def m_kong_client_get_forwarded_port(self, *_):
        return self.s.client_port

    def m_kong_client_get_protocol(self, allow_terminated, *_):
        if self.s.route is None:
            return None
        if allow_terminated and self.s.trusted:
            v = self.s.get_header("x-forwarded-proto")
            if v and v.lower() in ("http", "https"):
                return v.lower()
        return "http"

    def m_kong_client_load_consumer(self, consumer_id, search_by_username, *_):
        self.check_phase(("rewrite", "access", "log"), "load_consumer")
        if not isinstance(consumer_id, str) or not consumer_id:
            raise LuaError("consumer_id must be a string")
        if not UUID_RE.match(consumer_id) and not search_by_username:
            raise LuaError("cannot load a consumer with an id that is not a uuid")
        for c in self.kong._consumers():
            if c.id == consumer_id:
                return c.as_entity()
        if search_by_username:
            for c in self.kong._consumers():
                if c.username == consumer_id:
                    return c.as_entity()
        return None

    def m_kong_client_authenticate(self, consumer, credential, *_):
        self.check_phase(("access",), "authenticate")
        if consumer is not None and not isinstance(consumer, (dict, list)):
            raise LuaError("consumer must be a table or nil")
        if credential is not None and not isinstance(credential, (dict, list)):
            raise LuaError("credential must be a table or nil")
        if consumer is None and credential is None:
            raise LuaError("either credential or consumer must be provided")
        self.s.authenticated_consumer = consumer
        self.s.authenticated_credential = credential
        return None

    def m_kong_client_get_consumer(self, *_):
        return self.s.authenticated_consumer

    def m_kong_client_get_credential(self, *_):
        return self.s.authenticated_credential

    # ---------------- kong.response ----------------
    def m_kong_response_set_header(self, name, value, *_):
        self.check_phase(("rewrite", "access", "header_filter", "response", "admin_api"), "set_header")
        value = _validate_header(name, value)
        self._resp_clear(name)
        for v in value if isinstance(value, list) else [value]:
            self.s.response_headers.append((name, v))

    def m_kong_response_add_header(self, name, value, *_):
        self.check_phase(("rewrite", "access", "header_filter", "response", "admin_api"), "add_header")
        value = _validate_header(name, value)
        for v in value if isinstance(value, list) else [value]:
            self.s.response_headers.append((name, v))

    def m_kong_response_clear_header(self, name, *_):
        if not isinstance(name, str):
            raise LuaError("invalid header name %r: got %s, expected string" % (name, lua_type(name)))
        self._resp_clear(name)

    def m_kong_response_set_headers(self, headers, *_):
        for k, v in _validate_headers_table(headers).items():
            self.m_kong_response_set_header(k, v)

    def _resp_clear(self, name):
        n = name.lower()
        self.s.response_headers[:] = [(k, v) for k, v in self.s.response_headers if k.lower() != n]

    def m_kong_response_get_header(self, name, *_):
        if not isinstance(name, str):
            raise LuaError("header name must be a string")
        for k, v in self.s.response_headers:
            if _norm_name(k) == _norm_name(name):
                return v
        return None

    def m_kong_response_get_headers(self, max_headers, *_):
        return self._headers_mmap(max_headers, self.s.response_headers)

    # exit / error are handled by build_exit (terminal)

    # ---------------- kong.service.request ----------------
    def _svc_phase(self):
        self.check_phase(("rewrite", "access"), "service.request")

    def m_kong_service_request_set_header(self, name, value, *_):
        self._svc_phase()
        value = _validate_header(name, value)
        if name.lower() == "host":
            self.s.upstream_host = value if isinstance(value, str) else value[0]
        self._req_clear(name)
        for v in value if isinstance(value, list) else [value]:
            self.s.headers.append([name, from_lua(v) if isinstance(v, str) else v])

    def m_kong_service_request_add_header(self, name, value, *_):
        self._svc_phase()
        value = _validate_header(name, value)
        if name.lower() == "host":
            self.s.upstream_host = value if isinstance(value, str) else value[0]
        for v in value if isinstance(value, list) else [value]:
            self.s.headers.append([name, from_lua(v) if isinstance(v, str) else v])

    def m_kong_service_request_clear_header(self, name, *_):
        self._svc_phase()
        if not isinstance(name, str):
            raise LuaError("invalid header name %r: got %s, expected string" % (name, lua_type(name)))
        self._req_clear(name)

    def m_kong_service_request_set_headers(self, headers, *_):
        self._svc_phase()
        for k, v in _validate_headers_table(headers).items():
            self.m_kong_service_request_set_header(k, v)

    def _req_clear(self, name):
        # lua-nginx-module's ngx.req.set_header/clear_header match names case-insensitively and keep "_"
        # and "-" apart (its underscore replacement is compiled out with "#if 0"), unlike get_header,
        # which reads $http_<name>, where nginx treats the two alike.
        n = name.lower()
        self.s.headers[:] = [h for h in self.s.headers if h[0].lower() != n]

    def m_kong_service_request_set_path(self, path, *_):
        self._svc_phase()
        if not isinstance(path, str):
            raise LuaError("path must be a string")
        if not path.startswith("/"):
            raise LuaError("path must start with /")
        self.s.upstream_path = path

    def m_kong_service_request_set_raw_query(self, query, *_):
        self._svc_phase()
        if not isinstance(query, str):
            raise LuaError("query must be a string")
        self.s.upstream_query = query

    def m_kong_service_request_set_query(self, args, *_):
        self._svc_phase()
        if not isinstance(args, (dict, list)):
            raise LuaError("args must be a table")
        self.s.upstream_query = encode_args(args if isinstance(args, dict) else {})

    def m_kong_service_request_set_method(self, method, *_):
        self._svc_phase()
        if not isinstance(method, str):
            raise LuaError("method must be a string")
        if method.upper() != method or method not in VALID_METHODS:
            raise LuaError("invalid method: " + method)
        self.s.upstream_method = method

    def m_kong_service_request_set_raw_body(self, body, *_):
        self._svc_phase()
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(body, bytes):
            raise LuaError("body must be a string")
        self.s.upstream_body = body

    def m_kong_service_request_set_scheme(self, scheme, *_):
        self._svc_phase()
        if scheme not in ("http", "https"):
            raise LuaError("invalid scheme: " + lua_tostring(scheme))
        self.s.upstream_scheme = scheme

    # ---------------- kong.log ----------------
    def _log(self, level, args):
        args = [a for a in args]
        while args and args[-1] is None:  # padding added by call()
            args.pop()
        self.kong._log(level, " ".join(lua_tostring(a) for a in args), plugin=self.plugin.name)

    def m_kong_log_set_serialize_value(self, key, value, *_):
        if not isinstance(key, str):
            raise LuaError("key must be a string")
        self.s.serialize_values[key] = value

    # ---------------- kong.ctx / kong.nginx ----------------
    def m_kong_ctx_shared_get(self, k, *_):
        return self.s.ctx_shared.get(k)

    def m_kong_ctx_shared_set(self, k, v, *_):
        if v is None:
            self.s.ctx_shared.pop(k, None)
        else:
            self.s.ctx_shared[k] = v

    def m_kong_nginx_get_ctx(self, k, *_):
        return self.s.nginx_ctx.get(k)

    def m_kong_nginx_set_ctx(self, k, v, *_):
        self.s.nginx_ctx[k] = v

    def m_kong_nginx_get_subsystem(self, *_):
        return "http"

    def m_kong_nginx_req_start_time(self, *_):
        return self.s.start_time

    def m_kong_nginx_get_var(self, name, *_):
        if not isinstance(name, str):
            raise LuaError("variable name must be a string")
        s = self.s
        if name.startswith("http_"):
            return s.get_header(name[5:])
        table = {
            "request_uri": s.raw_uri,
            "uri": s.path,
            "args": s.raw_query or None,
            "is_args": "?" if "?" in s.raw_uri else "",
            "host": s.host,
            "remote_addr": s.client_ip,
            "realip_remote_addr": s.client_ip,
            "remote_port": str(s.client_port),
            "server_port": str(s.server_port),
            "scheme": "http",
            "request_method": s.method,
            "request_id": s.request_id,
            "kong_request_id": s.request_id,
            "server_protocol": "HTTP/%s" % lua_tostring(s.http_version),
            "upstream_x_forwarded_prefix": s.matched_prefix,
        }
        return table.get(name)

    # ---------------- misc ----------------
    def m_kong_node_get_id(self, *_):
        return self.kong.node_id

    def m_kong_node_get_hostname(self, *_):
        return socket.gethostname()

    def m_kong_node_get_memory_stats(self, *_):
        return {"lua_shared_dicts": {}, "workers_lua_vms": [{"http_allocated_gc": 1048576, "pid": 1}]}

    def m_kong_plugin_get_id(self, *_):
        return self.plugin.id

    def m_kong_router_get_route(self, *_):
        r = self.s.route
        if r is None:
            return None
        d = {
            "id": r.id,
            "paths": r.paths,
            "protocols": r.protocols,
            "strip_path": r.strip_path,
            "preserve_host": r.preserve_host,
            "regex_priority": r.regex_priority,
            "path_handling": "v0",
            "https_redirect_status_code": r.https_redirect_status_code,
            "request_buffering": True,
            "response_buffering": True,
            "ws_id": "default",
        }
        for k in ("name", "methods", "hosts", "headers"):
            if getattr(r, k):
                d[k] = getattr(r, k)
        if r.service is not None:
            d["service"] = {"id": r.service.id}
        return d

    def m_kong_router_get_service(self, *_):
        sv = self.s.service
        if sv is None:
            return None
        d = {
            "id": sv.id,
            "protocol": sv.protocol,
            "host": sv.host,
            "port": sv.port,
            "retries": 5,
            "connect_timeout": 60000,
            "read_timeout": int(sv.read_timeout * 1000),
            "write_timeout": 60000,
            "enabled": sv.enabled,
        }
        if sv.name:
            d["name"] = sv.name
        if sv.path:
            d["path"] = sv.path
        return d

    def m_kong_ip_is_trusted(self, ip, *_):
        if not isinstance(ip, str):
            raise LuaError("address must be a string")
        return ip_in(ip, self.s.trusted_ips)

    def m_kong_vault_is_reference(self, ref, *_):
        return isinstance(ref, str) and ref.startswith("{vault://") and ref.endswith("}")

    def m_kong_vault_get(self, ref, *_):
        if not isinstance(ref, str):
            raise LuaError("reference must be a string")
        return self.kong.vault.get(ref)


for _m, _lvl in LOG_LEVELS.items():

    def _mk(level):
        def f(self, *args):
            self._log(level, args)

        return f

    setattr(Pdk, "m_" + _m.replace(".", "_"), _mk(_lvl))


def _tonumber(v):
    if v is None:
        return None
    try:
        f = float(str(v).strip())
    except ValueError:
        return None
    return int(f) if f.is_integer() else f


def build_exit(method: str, args: list, state: RequestState) -> ExitResponse:
    """Validate kong.response.exit/error like kong/pdk/response.lua and build the response."""
    args = list(args) + [None] * 3
    if method == "kong.response.exit":
        status, body, headers = args[0], args[1], args[2]
        if lua_type(status) != "number":
            raise LuaError("code must be a number")
        if not (isinstance(status, int) or float(status).is_integer()) or not 100 <= status <= 599:
            # STRICTER for non-integers: Lua would accept 200.5 and fail later in nginx
            raise LuaError("code must be a number between 100 and 599")
        if body is not None and not isinstance(body, (str, bytes, dict, list)):
            raise LuaError("body must be a nil, string or table")
        if headers is not None and not isinstance(headers, (dict, list)):
            raise LuaError("headers must be a nil or table")
        hdrs = _validate_headers_table(headers) if headers is not None else {}
        out_headers = _merge(state.response_headers, hdrs)
        if isinstance(body, (dict, list)):
            payload = cjson_encode(body if body != [] else {}).encode("utf-8")
            if not _has(out_headers, "content-type"):
                out_headers.append(("Content-Type", "application/json; charset=utf-8"))
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        elif isinstance(body, bytes):
            payload = body
        else:
            payload = b""
        return ExitResponse(int(status), payload, out_headers, "exit")
    # kong.response.error
    status, message, headers = args[0], args[1], args[2]
    if lua_type(status) != "number":
        raise LuaError("code must be a number")
    if not (isinstance(status, int) or float(status).is_integer()) or not 400 <= status <= 599:
        raise LuaError("code must be a number between 400 and 599")
    if message is not None and not isinstance(message, str):
        raise LuaError("message must be a nil or a string")
    if headers is not None and not isinstance(headers, (dict, list)):
        raise LuaError("headers must be a nil or table")
    hdrs = _validate_headers_table(headers) if headers is not None else {}
    status = int(status)
    if message is None:
        message = HTTP_MESSAGES.get(status, "The upstream server responded with %d" % status)
    out_headers = _merge(state.response_headers, hdrs)
    accept = state.get_header("accept")
    ctype, payload = error_template(accept, message, state.request_id)
    if not _has(out_headers, "content-type"):
        out_headers.append(("Content-Type", ctype))
    return ExitResponse(status, payload, out_headers, "error")


def _has(headers, name):
    return any(k.lower() == name for k, _ in headers)


def _merge(pending, hdrs: dict):
    out = list(pending)
    for k, v in hdrs.items():
        out = [(a, b) for a, b in out if a.lower() != k.lower()]
        for x in v if isinstance(v, list) else [v]:
            out.append((k, x))
    return out


def kong_error_response(status: int, state: RequestState, message: str | None = None) -> ExitResponse:
    """A Kong-generated error (500 on Lua errors, 404 no route, 502 upstream)."""
    message = message or HTTP_MESSAGES.get(status, "An unexpected error occurred")
    ctype, payload = error_template(state.get_header("accept"), message, state.request_id)
    return ExitResponse(status, payload, [("Content-Type", ctype)], "kong")
