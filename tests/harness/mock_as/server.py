"""HTTP plumbing: a threaded HTTP/1.1 listener (plain or TLS, optionally asking for client certificates).

The listener knows nothing about OAuth: it parses a request into ``Request``, hands it to
``owner._dispatch(request)`` and writes the returned ``Response`` (always with a Content-Length), or drops
the connection / hangs as the response says. TLS handshakes run in the connection's own thread, and every
live connection is tracked so that ``close()`` can cut keep-alive and hanging connections at once.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

MAX_BODY = 1 << 20


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict  # lowercase name -> value (repeated headers joined with ", ")
    body: bytes
    form: dict  # parsed application/x-www-form-urlencoded body, else {}
    peer_cert_der: bytes | None
    listener: "Listener"

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    action: str | None = None  # None | "drop" | "hang"

    @classmethod
    def json(cls, obj, status: int = 200, headers: dict | None = None) -> "Response":
        h = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        h.update(headers or {})
        return cls(status, json.dumps(obj).encode("utf-8"), h)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-as/1"
    timeout = 120

    def log_message(self, *a):
        pass

    def _read_body(self) -> bytes | None:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            out, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(out)
                total += size
                if total > MAX_BODY:
                    return None
                out.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return None
        return self.rfile.read(n) if n else b""

    def _handle(self):
        listener: Listener = self.server
        try:
            body = self._read_body()
        except ValueError:
            body = None
        if body is None:
            self.close_connection = True
            self._write(Response.json({"error": "invalid_request", "error_description": "bad or oversized body"}, 400))
            return
        headers: dict = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        path, _, query = self.path.partition("?")
        form = {}
        if headers.get("content-type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                form = {}
        peer = None
        if isinstance(self.connection, ssl.SSLSocket):
            peer = self.connection.getpeercert(binary_form=True)
        req = Request(self.command, path, query, headers, body, form, peer, listener)
        try:
            resp = listener.owner._dispatch(req)
        except Exception as e:  # noqa: BLE001 - a harness bug must show up as a 500, never kill the thread
            listener.owner._note_error(f"{type(e).__name__}: {e}")
            resp = Response.json({"error": "server_error", "error_description": f"mock bug: {e}"}, 500)
        if resp.action == "hang":
            listener.owner._faults.hang()
            resp.action = "drop"
        if resp.action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(resp)

    def _write(self, resp: Response):
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)
        self.wfile.flush()

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)


class Listener(ThreadingHTTPServer):
    """``owner`` must provide ``_dispatch(Request) -> Response``, ``_note_error(str)`` and ``_faults.hang()``."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, owner, name: str, host: str, port: int, ssl_context: ssl.SSLContext | None = None):
        self.owner, self.name, self.ssl_context = owner, name, ssl_context
        self._live: set = set()
        self._live_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def _track(self, sock, add: bool):
        with self._live_lock:
            (self._live.add if add else self._live.discard)(sock)

    def finish_request(self, request, client_address):
        sock = request
        self._track(sock, True)
        try:
            if self.ssl_context is not None:
                request.settimeout(10)
                try:
                    sock = self.ssl_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # handshake refused (e.g. an untrusted client certificate); wrap_socket closed its socket
                finally:
                    self._track(request, False)
                self._track(sock, True)
                sock.settimeout(None)
            self.RequestHandlerClass(sock, client_address, self)
        finally:
            self._track(sock, False)
            if sock is not request:
                try:
                    sock.close()
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError, OSError)):
            return
        self.owner._note_error(f"{type(exc).__name__}: {exc}")

    def start(self):
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"mock-as-{self.name}", daemon=True
        )
        self._thread.start()

    def close(self):
        self.shutdown()
        with self._live_lock:
            live = list(self._live)
        for s in live:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)
