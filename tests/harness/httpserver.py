"""The one HTTP-server base of the test servers (the Kong stand-in's proxy, the mock authorization
server, the echo upstream, a test's own server through :func:`serve`): a threaded HTTP/1.1 listener
on loopback that serves on its own thread and, at :meth:`HttpServer.stop`, cuts every live
connection (keep-alive and hanging ones included)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

# a chunk-size or trailer line longer than this is not HTTP
MAX_LINE = 65537


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive), quiet, and every method (``do_<ANY>``) goes to :meth:`handle_request`."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as nginx (Kong's tcp_nodelay on) and servers behind it answer: with Nagle's algorithm
    # a body written after its headers waits for the client's delayed ACK, about 40 ms a keep-alive call
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_request(self) -> None:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):
            return self.handle_request
        raise AttributeError(name)

    def read_chunked(self, limit: int | None = None) -> bytes | None:
        """A ``Transfer-Encoding: chunked`` body, trailers skipped; None when it exceeds ``limit``
        bytes. A chunk size that is not hexadecimal raises ValueError."""
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(MAX_LINE).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if limit is not None and total > limit:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(MAX_LINE)


class HttpServer(ThreadingHTTPServer):
    """Serves ``handler`` on ``(host, port)`` (port 0: any free one) once :meth:`start` is called."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    poll_interval = 0.1
    thread_name = "http-server"

    def __init__(self, address: tuple[str, int], handler: type[Handler]) -> None:
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def track(self, conn: socket.socket, live: bool) -> None:
        with self._live_lock:
            if live:
                self._live.add(conn)
            else:
                self._live.discard(conn)

    def open_connection(self, conn: socket.socket) -> socket.socket | None:
        """The connection the handler reads and writes (a subclass may wrap it in TLS); None drops it."""
        return conn

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.track(request, True)
        conn: socket.socket | None = request
        try:
            conn = self.open_connection(request)
            if conn is not request:
                self.track(request, False)  # wrapped or refused: the raw socket is no longer the connection
                if conn is None:
                    return
                self.track(conn, True)
            super().finish_request(conn, client_address)
        finally:
            self.track(request, False)
            if conn is not None and conn is not request:
                self.track(conn, False)
                try:
                    conn.close()
                except OSError:
                    pass

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": self.poll_interval}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        with self._live_lock:
            live = list(self._live)
        for conn in live:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "application/json") -> None:
    """A whole answer with its Content-Length, from a test server's handler."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def serve(handler: type[Handler]) -> Iterator[str]:
    """An :class:`HttpServer` with ``handler`` on a free loopback port, for a test's own server;
    yields its base URL (``http://127.0.0.1:PORT``) and stops it (live connections cut) after."""
    server = HttpServer(("127.0.0.1", 0), handler).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
