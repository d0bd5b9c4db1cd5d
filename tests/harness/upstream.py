"""Echo upstream ("MCP server stand-in") on 127.0.0.1:0.

Every request -> 200 JSON {"method","path","query","headers":{lowercase name: [values]},"body"};
each request is recorded (thread-safe). GET on a path ending in ``/sse`` streams 3 SSE events with a
0.2 s pause between them (text/event-stream, chunked).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, cast

from tests.harness.httpserver import Handler, HttpServer


class _EchoHandler(Handler):
    def _body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            return self.read_chunked() or b""
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_request(self) -> None:
        body = self._body()
        path, _, query = self.path.partition("?")
        headers: dict[str, list[str]] = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        rec = {
            "method": self.command,
            "path": path,
            "query": query,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
            "raw_headers": list(self.headers.items()),
        }
        cast(_Server, self.server).owner.record(rec)
        if self.command == "GET" and path.endswith("/sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                if i:
                    time.sleep(0.2)
                data = (f"id: {i}\nevent: message\ndata: {json.dumps({'n': i})}\n\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        payload = json.dumps({k: rec[k] for k in ("method", "path", "query", "headers", "body")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Upstream", "echo")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class _Server(HttpServer):
    # A real MCP server behind Kong accepts bursts of connections (socketserver's default is 5).
    request_queue_size = 1024
    thread_name = "echo-upstream"

    def __init__(self, owner: EchoUpstream) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _EchoHandler)


class EchoUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None

    def record(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(rec)

    def start(self) -> EchoUpstream:
        self._server = _Server(self).start()
        self.port = self._server.port
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def __enter__(self) -> EchoUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
