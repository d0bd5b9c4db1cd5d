"""HTTP/1.1 proxy listener (keep-alive) + router + upstream forwarding (streaming), like Kong's proxy
server block in kong/templates/nginx_kong.lua."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import uuid
from typing import Protocol, cast

from tests.harness.httpserver import Handler, HttpServer

from .declarative import Service
from .pdk import SERVER_HEADER, ExitResponse, RequestState, kong_error_response
from .records import ConfigState, Outcome, RequestRecord
from .router import Match, find_route, upstream_path

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
}
# headers nginx sets with proxy_set_header (client-sent values are replaced)
KONG_SET = {
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-kong-request-id",
    "via",
}


class Gateway(Protocol):
    """What the listener needs of the stand-in (core.KongStandIn)."""

    trusted_ips: list[str]
    host_map: dict[str, str]

    @property
    def config(self) -> ConfigState: ...

    @property
    def client_body_buffer_size(self) -> int: ...

    def begin(self, record: RequestRecord) -> None: ...

    def run_plugins(self, config: ConfigState, match: Match, state: RequestState, record: RequestRecord) -> Outcome: ...

    def log(self, level: str, message: str) -> None: ...


class _Handler(Handler):
    server_version = SERVER_HEADER
    sys_version = ""

    @property
    def proxy(self) -> ProxyServer:
        return cast(ProxyServer, self.server)

    # ------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        te = self.headers.get("Transfer-Encoding")
        cl = self.headers.get("Content-Length")
        if te and cl:
            return None  # nginx rejects requests with both (400)
        if te:
            if te.strip().lower() != "chunked":
                return None
            return self.read_chunked()
        if cl:
            try:
                n = int(cl)
            except ValueError:
                return None
            return self.rfile.read(n) if n > 0 else b""
        return b""

    def handle_request(self) -> None:
        kong = self.proxy.kong
        t0 = time.monotonic()
        request_id = uuid.uuid4().hex
        raw_uri = self.path
        if raw_uri.startswith("http://") or raw_uri.startswith("https://"):
            rest = raw_uri.split("://", 1)[1]
            raw_uri = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        state = RequestState(
            request_id=request_id,
            method=self.command,
            raw_uri=raw_uri,
            headers=[[k, v] for k, v in self.headers.items()],
            body=b"",
            client_ip=self.client_address[0],
            server_port=self.proxy.port,
            trusted_ips=kong.trusted_ips,
        )
        record = RequestRecord(request_id=request_id, method=self.command, path=raw_uri.split("?", 1)[0])
        kong.begin(record)
        body = self._read_body()
        if body is None:
            self.close_connection = True
            return self._send_exit(kong_error_response(400, state, "Bad request"), record, t0)
        state.body = body
        # nginx keeps a request body in memory up to client_body_buffer_size, past it in a temporary file
        state.body_in_file = len(body) > kong.client_body_buffer_size
        config = kong.config
        match = find_route(config.decl.routes, self.command, state.host, state.path, state.get_header)
        if match is None:
            return self._send_exit(kong_error_response(404, state, "no Route matched with those values"), record, t0)
        route = match.route
        if "http" not in route.protocols:
            if "https" in route.protocols:
                return self._send_exit(
                    kong_error_response(route.https_redirect_status_code, state, "Please use HTTPS protocol"),
                    record,
                    t0,
                )
            return self._send_exit(kong_error_response(404, state, "no Route matched with those values"), record, t0)
        state.matched_prefix = match.stripped_prefix if match.stripped_prefix not in (None, "/") else None
        state.uri_captures = match.captures
        outcome = kong.run_plugins(config, match, state, record)
        if outcome == "error":
            return self._send_exit(kong_error_response(500, state), record, t0)
        if isinstance(outcome, ExitResponse):
            record.exit = outcome.as_dict()
            return self._send_exit(outcome, record, t0)
        if route.service is None:
            # Kong: a route without a service and no plugin exit -> 503 "no Service found with those values"
            return self._send_exit(kong_error_response(503, state, "no Service found with those values"), record, t0)
        return self._forward(state, match, route.service, record, t0)

    # ------------------------------------------------------------------
    def _send_exit(self, ex: ExitResponse, record: RequestRecord, t0: float) -> None:
        record.status = ex.status
        latency = int((time.monotonic() - t0) * 1000)
        try:
            self.send_response_only(ex.status)
            self.send_header("Date", self.date_time_string())
            names = {k.lower() for k, _ in ex.headers}
            for k, v in ex.headers:
                if k.lower() in ("content-length", "transfer-encoding", "connection"):
                    continue
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(ex.body)))
            if "server" not in names:
                self.send_header("Server", SERVER_HEADER)
            self.send_header("X-Kong-Response-Latency", str(latency))
            self.send_header("X-Kong-Request-Id", record.request_id)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and ex.body:
                self.wfile.write(ex.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _forward(self, state: RequestState, match: Match, service: Service, record: RequestRecord, t0: float) -> None:
        kong = self.proxy.kong
        route = match.route
        path = upstream_path(match, service.path, state.path)
        query = state.raw_query
        target = path + ("?" + query if query else "")
        method = state.method
        body = state.body
        trusted = state.trusted
        # Host
        if state.upstream_host is not None:
            host_header = state.upstream_host
        elif route.preserve_host:
            host_header = state.get_header("host") or service.host
        else:
            default = 443 if service.protocol == "https" else 80
            host_header = service.host if service.port == default else f"{service.host}:{service.port}"
        # X-Forwarded-* (kong/runloop/handler.lua access.after + nginx_kong.lua proxy_set_header)
        fwd_proto = (trusted and state.get_header("x-forwarded-proto")) or "http"
        fwd_host = (trusted and state.get_header("x-forwarded-host")) or state.host
        fwd_port = (trusted and state.get_header("x-forwarded-port")) or str(state.server_port)
        fwd_path = (trusted and state.get_header("x-forwarded-path")) or state.raw_path
        fwd_prefix = (trusted and state.get_header("x-forwarded-prefix")) or state.matched_prefix
        existing_xff = state.get_header("x-forwarded-for")
        # STRICTER than nginx's $proxy_add_x_forwarded_for: an incoming X-Forwarded-For is only kept
        # when the client is trusted.
        xff = f"{existing_xff}, {state.client_ip}" if (trusted and existing_xff) else state.client_ip
        headers = []
        conn_listed = set()
        for k, v in state.headers:
            if k.lower() == "connection":
                conn_listed |= {x.strip().lower() for x in v.split(",")}
        for k, v in state.headers:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in KONG_SET or lk in conn_listed or lk == "content-length":
                continue
            headers.append((k, v))
        headers = [("Host", host_header)] + headers
        headers += [
            ("X-Forwarded-For", xff),
            ("X-Forwarded-Proto", fwd_proto),
            ("X-Forwarded-Host", fwd_host),
            ("X-Forwarded-Port", fwd_port),
            ("X-Forwarded-Path", fwd_path),
        ]
        if fwd_prefix:
            headers.append(("X-Forwarded-Prefix", fwd_prefix))
        headers += [
            ("X-Real-IP", state.client_ip),
            ("X-Kong-Request-Id", record.request_id),
            ("Via", f"1.1 {SERVER_HEADER}"),
        ]
        if body or method in ("POST", "PUT", "PATCH") or state.get_header("content-length") is not None:
            headers.append(("Content-Length", str(len(body))))
        record.upstream_request = {"method": method, "path": path, "query": query, "headers": list(headers)}
        dial = kong.host_map.get(f"{service.host}:{service.port}", f"{service.host}:{service.port}")
        dhost, dport = dial.rsplit(":", 1)
        if service.protocol == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # Kong's default: tls_verify off
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                dhost, int(dport), timeout=service.read_timeout, context=ctx
            )
        else:
            conn = http.client.HTTPConnection(dhost, int(dport), timeout=service.read_timeout)
        t_up = time.monotonic()
        try:
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
            except socket.timeout:
                return self._send_exit(kong_error_response(504, state), record, t0)
            except (OSError, http.client.HTTPException) as e:
                kong.log("err", f"connect() to {dial} failed: {e} (upstream {service.host}:{service.port})")
                return self._send_exit(kong_error_response(502, state), record, t0)
            record.proxied = True
            record.status = resp.status
            up_latency = int((time.monotonic() - t_up) * 1000)
            proxy_latency = int((t_up - t0) * 1000)
            plugin_names = {k.lower() for k, _ in state.response_headers}
            up_headers = [
                (k, v)
                for k, v in resp.getheaders()
                if k.lower() not in HOP_BY_HOP
                and k.lower() not in ("content-length",)
                and k.lower() not in plugin_names
                and k.lower() != "via"
            ]
            length = resp.getheader("Content-Length")
            no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            try:
                self.send_response_only(resp.status, resp.reason)
                names = {k.lower() for k, _ in up_headers}
                if "date" not in names:
                    self.send_header("Date", self.date_time_string())
                for k, v in up_headers:
                    self.send_header(k, v)
                # plugin-set downstream headers win over upstream headers of the same name (nginx's
                # behaviour here is unspecified in the sources; the stand-in lets the plugin win)
                for k, v in state.response_headers:
                    self.send_header(k, v)
                chunked = False
                if length is not None:
                    self.send_header("Content-Length", length)
                elif not no_body:
                    self.send_header("Transfer-Encoding", "chunked")
                    chunked = True
                if "server" not in names:
                    self.send_header("Server", SERVER_HEADER)
                self.send_header("Via", f"1.1 {SERVER_HEADER}")
                self.send_header("X-Kong-Upstream-Latency", str(up_latency))
                self.send_header("X-Kong-Proxy-Latency", str(proxy_latency))
                self.send_header("X-Kong-Request-Id", record.request_id)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                if not no_body:
                    while True:
                        chunk = resp.read1(65536)
                        if not chunk:
                            break
                        if chunked:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        else:
                            self.wfile.write(chunk)
                        self.wfile.flush()
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
            except (OSError, http.client.HTTPException) as e:
                kong.log("err", f"error while streaming the upstream response: {e}")
                self.close_connection = True
            finally:
                resp.close()
        finally:
            conn.close()


class ProxyServer(HttpServer):
    # Kong's proxy listener: `listen ... backlog=16384` in its nginx template (socketserver's default is 5).
    request_queue_size = 16384
    thread_name = "kong-standin-http"
    block_on_close = True  # stop() returns once every request has been answered (its record complete)

    def __init__(self, kong: Gateway, port: int) -> None:
        self.kong = kong
        super().__init__(("127.0.0.1", port), _Handler)
