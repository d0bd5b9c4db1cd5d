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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import uri
from .declarative import Consumer, cjson_encode
from .normalize import UUID_RE

KONG_VERSION = "3.9.1"
SERVER_HEADER = f"kong/{KONG_VERSION}"
MAX_REQ_HEADERS_DEFAULT = 100
SERVICE_REQUEST_PHASES = ("rewrite", "access")
BEFORE_CONTENT_PHASES = ("rewrite", "access", "response", "error", "admin_api")  # request.lua before_content
BODY_NOT_BUFFERED = "request body did not fit into client body buffer, consider raising 'client_body_buffer_size'"

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

# mp_rpc.lua get_step_method / by_pdk_method, for the methods the stand-in models (the others step with plugin.Step)
STEP_METHODS = {
    "kong.client.authenticate": "plugin.StepCredential",
    "kong.client.load_consumer": "plugin.StepConsumer",
    "kong.request.get_headers": "plugin.StepMultiMap",
}
MULTIMAP_METHODS = {m for m, s in STEP_METHODS.items() if s == "plugin.StepMultiMap"}

# the kong.log functions the plugin calls, by Kong's level name
LOG_LEVELS = {
    "kong.log.debug": "debug",
    "kong.log.info": "info",
    "kong.log.notice": "notice",
    "kong.log.warn": "warn",
    "kong.log.err": "err",
    "kong.log.crit": "crit",
    "kong.log.alert": "alert",
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

    def __repr__(self) -> str:
        return f"<lua error: {self.message}>"


@dataclass
class ExitResponse:
    status: int
    body: bytes
    headers: list[tuple[str, str]]
    source: str  # "exit" / "error"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "headers": list(self.headers)}


def error_template(accept: str | None, message: str, request_id: str) -> tuple[str, bytes]:
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


def lua_type(v: object) -> str:
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


def lua_tostring(v: object) -> str:
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


def to_lua_result(v: Any) -> Any:
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


def fix_mmap(d: dict[str, Any] | None) -> dict[str, Any]:
    """mp_rpc.lua fix_mmap: string -> [string], true -> [], empty table -> empty map."""
    out: dict[str, Any] = {}
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


def _validate_header(name: Any, value: Any) -> str | list[str]:
    """pdk/private/checks.lua validate_header."""
    if not isinstance(name, str):
        raise LuaError("invalid header name %r: got %s, expected string" % (name, lua_type(name)))
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


def _validate_headers_table(headers: Any) -> dict[str, str | list[str]]:
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


def ip_in(ip: str, cidrs: list[str]) -> bool:
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
    headers: list[list[str]]  # [[name, value]] in received order (mutated by service.request.*)
    body: bytes
    client_ip: str
    server_port: int
    trusted_ips: list[str]
    matched_prefix: str | None = None
    uri_captures: dict[str, Any] = field(default_factory=lambda: {"unnamed": [], "named": {}})
    response_headers: list[tuple[str, str]] = field(default_factory=list)  # pending downstream headers
    body_in_file: bool = False  # nginx buffered the body to a temporary file (past client_body_buffer_size)
    upstream_host: str | None = None  # set by kong.service.request.set_header("host", ...)

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

    def get_header(self, name: str) -> str | None:
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
    """Answers the PDK calls of one plugin's phase handler for one request."""

    def __init__(
        self,
        state: RequestState,
        phase: str,
        consumers: Callable[[], list[Consumer]],
        log: Callable[[str, str], None],
    ) -> None:
        self.s = state
        self.phase = phase
        self.consumers = consumers
        self.log = log

    # -----------------------------------------------------------------
    def call(self, method: str, args: list[Any]) -> Any:
        if method not in KNOWN_METHODS:
            raise UnknownMethod(method)
        if method in LOG_LEVELS:
            self._log(LOG_LEVELS[method], args)
            return None
        fn = getattr(self, "m_" + method.replace(".", "_"), None)
        if fn is None:
            raise NotModelled(f"the Kong stand-in does not model PDK method {method}")
        result = fn(*(list(args) + [None] * 8))
        if method in MULTIMAP_METHODS:
            return fix_mmap(result) if result is not None else None
        return to_lua_result(result)

    def check_phase(self, allowed: tuple[str, ...]) -> None:
        if self.phase not in allowed:
            raise LuaError("function cannot be called in %s phase (only in: %s)" % (self.phase, ", ".join(allowed)))

    # ---------------- kong.request ----------------
    def m_kong_request_get_header(self, name: Any, *_: Any) -> Any:
        if not isinstance(name, str):
            raise LuaError("header name must be a string")
        value = self.s.get_header(name)
        return wire(value) if isinstance(value, str) else value

    def m_kong_request_get_headers(self, max_headers: Any, *_: Any) -> dict[str, list[Any]]:
        if max_headers is None:
            max_headers = MAX_REQ_HEADERS_DEFAULT
        else:
            if lua_type(max_headers) != "number":
                raise LuaError("max_headers must be a number")
            if max_headers < 1:
                raise LuaError("max_headers must be >= 1")
            if max_headers > 1000:
                raise LuaError("max_headers must be <= 1000")
        out: dict[str, list[Any]] = {}
        for i, (k, v) in enumerate(self.s.headers):
            if i >= max_headers:
                break  # truncated silently (the 2nd return value never reaches Python)
            out.setdefault(k.lower(), []).append(wire(v) if isinstance(v, str) else v)
        return out

    def m_kong_request_get_method(self, *_: Any) -> str:
        return self.s.method

    def m_kong_request_get_path(self, *_: Any) -> str:
        return self.s.path

    def m_kong_request_get_raw_body(self, max_allowed_file_size: Any, *_: Any) -> bytes:
        """kong/pdk/request.lua get_raw_body (3.9; unchanged on master): ngx.req.read_body(), then
        the body nginx holds in memory (``""`` when there is none: no body, an empty one, a GET); a
        body nginx buffered to a file is read from it only when ``max_allowed_file_size`` is 0 or at
        least its size, else ``nil, err``. A nil result never reaches the plugin: mp_rpc.lua applies
        ``fix_raw`` to it, and packing nil as msgpack bin raises, so the call is a Lua error (the event
        is abandoned, Kong answers 500). Bodies cross as msgpack bin (bytes), ``b""`` included.

        STRICTER: a body longer than client_body_buffer_size is always "in a file" here; nginx
        sizes the buffer of a Content-Length body up to 1.25x the setting to fit it
        (ngx_http_request_body.c: ``size += size >> 2``), so Kong may return somewhat larger ones."""
        self.check_phase(BEFORE_CONTENT_PHASES)
        body = self.s.body
        if not self.s.body_in_file:
            return body
        limit = max_allowed_file_size
        if limit is None or limit is False:  # Lua: `not max_allowed_file_size`
            err = BODY_NOT_BUFFERED
        elif lua_type(limit) != "number":
            raise LuaError(f"attempt to compare {lua_type(limit)} with number")
        elif limit < 0:
            err = BODY_NOT_BUFFERED
        elif limit > 0 and len(body) > limit:
            err = "request body file too big: %d > %d" % (len(body), int(limit))
        else:
            return body
        raise LuaError(
            f"get_raw_body returned nil, {err!r}; mp_rpc.lua fix_raw packs it as bin: "
            "MessagePack.lua: attempt to get length of local 'str' (a nil value)"
        )

    def m_kong_request_get_uri_captures(self, *_: Any) -> dict[str, Any]:
        return self.s.uri_captures

    def m_kong_request_get_forwarded_scheme(self, *_: Any) -> str:
        if self.s.trusted:
            v = self.s.get_header("x-forwarded-proto")
            if v:
                return v.lower()
        return "http"

    def m_kong_request_get_forwarded_host(self, *_: Any) -> str:
        if self.s.trusted:
            h = self.s.get_header("x-forwarded-host")
            if h:
                if "@" in h:
                    h = h.split("@", 1)[1]
                return h.split(":", 1)[0].lower()
        return self.s.host

    def m_kong_request_get_forwarded_port(self, *_: Any) -> float:
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

    def m_kong_request_get_forwarded_prefix(self, *_: Any) -> str | None:
        if self.s.trusted:
            p = self.s.get_header("x-forwarded-prefix")
            if p:
                return p
        return self.s.matched_prefix  # var.upstream_x_forwarded_prefix

    # ---------------- kong.client ----------------
    def m_kong_client_get_forwarded_ip(self, *_: Any) -> str:
        # nginx realip (real_ip_header X-Real-IP, set_real_ip_from = trusted_ips)
        if self.s.trusted:
            v = self.s.get_header("x-real-ip")
            if v:
                return v.strip()
        return self.s.client_ip

    def m_kong_client_load_consumer(self, consumer_id: Any, search_by_username: Any, *_: Any) -> dict[str, Any] | None:
        self.check_phase(("rewrite", "access", "log"))
        if not isinstance(consumer_id, str) or not consumer_id:
            raise LuaError("consumer_id must be a string")
        if not UUID_RE.match(consumer_id) and not search_by_username:
            raise LuaError("cannot load a consumer with an id that is not a uuid")
        for c in self.consumers():
            if c.id == consumer_id:
                return c.as_entity()
        if search_by_username:
            for c in self.consumers():
                if c.username == consumer_id:
                    return c.as_entity()
        return None

    def m_kong_client_authenticate(self, consumer: Any, credential: Any, *_: Any) -> None:
        self.check_phase(("access",))
        if consumer is not None and not isinstance(consumer, (dict, list)):
            raise LuaError("consumer must be a table or nil")
        if credential is not None and not isinstance(credential, (dict, list)):
            raise LuaError("credential must be a table or nil")
        if consumer is None and credential is None:
            raise LuaError("either credential or consumer must be provided")

    # ---------------- kong.response (exit / error are terminal: build_exit) ----------------
    def m_kong_response_set_header(self, name: Any, value: Any, *_: Any) -> None:
        self.check_phase(("rewrite", "access", "header_filter", "response", "admin_api"))
        value = _validate_header(name, value)
        n = name.lower()
        self.s.response_headers[:] = [(k, v) for k, v in self.s.response_headers if k.lower() != n]
        for v in value if isinstance(value, list) else [value]:
            self.s.response_headers.append((name, v))

    # ---------------- kong.service.request ----------------
    def m_kong_service_request_set_header(self, name: Any, value: Any, *_: Any) -> None:
        self.check_phase(SERVICE_REQUEST_PHASES)
        value = _validate_header(name, value)
        if name.lower() == "host":
            self.s.upstream_host = value if isinstance(value, str) else value[0]
        self._req_clear(name)
        for v in value if isinstance(value, list) else [value]:
            self.s.headers.append([name, from_lua(v) if isinstance(v, str) else v])

    def m_kong_service_request_clear_header(self, name: Any, *_: Any) -> None:
        self.check_phase(SERVICE_REQUEST_PHASES)
        if not isinstance(name, str):
            raise LuaError("invalid header name %r: got %s, expected string" % (name, lua_type(name)))
        self._req_clear(name)

    def m_kong_service_request_set_headers(self, headers: Any, *_: Any) -> None:
        self.check_phase(SERVICE_REQUEST_PHASES)
        for k, v in _validate_headers_table(headers).items():
            self.m_kong_service_request_set_header(k, v)

    def _req_clear(self, name: str) -> None:
        # lua-nginx-module's ngx.req.set_header/clear_header match names case-insensitively and keep "_"
        # and "-" apart (its underscore replacement is compiled out with "#if 0"), unlike get_header,
        # which reads $http_<name>, where nginx treats the two alike.
        n = name.lower()
        self.s.headers[:] = [h for h in self.s.headers if h[0].lower() != n]

    # ---------------- kong.log ----------------
    def _log(self, level: str, args: list[Any]) -> None:
        args = list(args)
        while args and args[-1] is None:  # nil arguments at the end print nothing
            args.pop()
        self.log(level, " ".join(lua_tostring(a) for a in args))


def _tonumber(v: object) -> float | None:
    if v is None:
        return None
    try:
        f = float(str(v).strip())
    except ValueError:
        return None
    return int(f) if f.is_integer() else f


def build_exit(method: str, args: list[Any], state: RequestState) -> ExitResponse:
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


def _has(headers: list[tuple[str, str]], name: str) -> bool:
    return any(k.lower() == name for k, _ in headers)


def _merge(pending: list[tuple[str, str]], hdrs: dict[str, str | list[str]]) -> list[tuple[str, str]]:
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
