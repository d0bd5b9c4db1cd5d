"""HTTP plumbing: a threaded HTTP/1.1 listener (plain or TLS, optionally asking for client certificates).

The listener knows nothing about OAuth: it parses a request into ``Request``, hands it to
``owner.dispatch(request)`` and writes the returned ``Response`` (always with a Content-Length), or drops
the connection / hangs as the response says. TLS handshakes run in the connection's own thread, and every
live connection is tracked so that ``stop()`` can cut keep-alive and hanging connections at once.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import parse_qs

from tests.harness.httpserver import Handler, HttpServer

MAX_BODY = 1 << 20


class Owner(Protocol):
    """What a listener needs of the mock (mock.MockAuthorizationServer)."""

    def dispatch(self, request: Request) -> Response: ...

    def note_error(self, message: str) -> None: ...

    def hang(self) -> None: ...


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lowercase name -> value (repeated headers joined with ", ")
    body: bytes
    form: dict[str, list[str]]  # parsed application/x-www-form-urlencoded body, else {}
    peer_cert_der: bytes | None
    listener: Listener

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None  # None | "drop" | "hang"

    @classmethod
    def json(cls, obj: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        h = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        h.update(headers or {})
        return cls(status, json.dumps(obj).encode("utf-8"), h)


class _Handler(Handler):
    server_version = "mock-as/1"
    timeout = 120

    def _read_body(self) -> bytes | None:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            return self.read_chunked(MAX_BODY)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return None
        return self.rfile.read(n) if n else b""

    def handle_request(self) -> None:
        listener = cast(Listener, self.server)
        try:
            body = self._read_body()
        except ValueError:
            body = None
        if body is None:
            self.close_connection = True
            self._write(Response.json({"error": "invalid_request", "error_description": "bad or oversized body"}, 400))
            return
        headers: dict[str, str] = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        path, _, query = self.path.partition("?")
        form: dict[str, list[str]] = {}
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
            resp = listener.owner.dispatch(req)
        except Exception as e:  # noqa: BLE001 - a harness bug must show up as a 500, never kill the thread
            listener.owner.note_error(f"{type(e).__name__}: {e}")
            resp = Response.json({"error": "server_error", "error_description": f"mock bug: {e}"}, 500)
        if resp.action == "hang":
            listener.owner.hang()
            resp.action = "drop"
        if resp.action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(resp)

    def _write(self, resp: Response) -> None:
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


class Listener(HttpServer):
    """One listening address of the mock (``main`` or ``mtls``), plain or TLS."""

    block_on_close = False
    poll_interval = 0.05

    def __init__(self, owner: Owner, name: str, host: str, port: int, ssl_context: ssl.SSLContext | None = None):
        self.owner, self.name, self.ssl_context = owner, name, ssl_context
        self.thread_name = f"mock-as-{name}"
        super().__init__((host, port), _Handler)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def open_connection(self, conn: socket.socket) -> socket.socket | None:
        """The TLS handshake runs here, in the connection's own thread."""
        if self.ssl_context is None:
            return conn
        conn.settimeout(10)
        try:
            tls = self.ssl_context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return None  # handshake refused (e.g. an untrusted client certificate); wrap_socket closed its socket
        tls.settimeout(None)
        return tls

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError, OSError)):
            return
        self.owner.note_error(f"{type(exc).__name__}: {exc}")
