"""Echo upstream ("MCP server stand-in") on 127.0.0.1:0.

Every request -> 200 JSON {"method","path","query","headers":{lowercase name: [values]},"body"};
each request is recorded (thread-safe). GET on a path ending in ``/sse`` streams 3 SSE events with a
0.2 s pause between them (text/event-stream, chunked).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            out = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        body = self._body()
        path, _, query = self.path.partition("?")
        headers: dict = {}
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
        self.server.owner._record(rec)
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

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A real MCP server behind Kong accepts bursts of connections (socketserver's default is 5).
    request_queue_size = 1024
    allow_reuse_address = True


class EchoUpstream:
    def __init__(self):
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    def _record(self, rec):
        with self._lock:
            self.requests.append(rec)

    def start(self):
        self._server = _Server(("127.0.0.1", 0), _EchoHandler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    @property
    def last(self):
        return self.requests[-1]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
