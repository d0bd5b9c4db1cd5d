"""Servers that stall, drip and black-hole, for tests of the plugin's outbound time budget.

- :class:`DripServer`: accepts TCP connections and answers a byte at a time (headers, body), or
  says nothing at all (a TLS handshake or an HTTP answer that never comes). It records each
  connection and whether the client has hung up, so a test can tell that the plugin's outbound
  work ended rather than lingering.
- :class:`BlackHole`: addresses where a TCP connect never completes (the listen queue is full and
  further SYNs are dropped, as by a firewall that drops packets).
- :class:`SilentHttps` and :class:`TlsProxy`: a TLS server that never answers, and an ``https://``
  forward proxy in front of it.
- :func:`hosts_launcher`: a start-command prefix that runs the plugin server with its own
  ``/etc/hosts`` (a private mount namespace), so one host name can have several addresses.

All on loopback; every loop is bounded and ends at :meth:`stop`.
"""

from __future__ import annotations

import select
import shlex
import socket
import ssl
import tempfile
import threading
from pathlib import Path


class DripServer:
    """``mode``: ``headers`` (a status line, then a header a byte at a time), ``body`` (headers with a
    large Content-Length, then the body a byte at a time) or ``silent`` (never a byte)."""

    def __init__(self, mode: str, interval: float = 0.25, host: str = "127.0.0.1") -> None:
        assert mode in ("headers", "body", "silent")
        self.mode, self.interval = mode, interval
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.opened = 0
        self.closed = 0
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> DripServer:
        self.acceptor.start()
        return self

    def url(self, path: str = "/jwks", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def open_connections(self) -> int:
        with self.lock:
            return self.opened - self.closed

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with self.lock:
                self.opened += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self.interval)
        try:
            if self.mode == "headers":
                self._send_then_drip(conn, b"HTTP/1.1 200 OK\r\n", b"X-Drip: " + b"a" * 100_000)
            elif self.mode == "body":
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n\r\n"
                self._send_then_drip(conn, head, b'{"keys": [' + b" " * 900_000)
            else:
                self._wait_for_hang_up(conn)
        finally:
            conn.close()
            with self.lock:
                self.closed += 1

    def _send_then_drip(self, conn: socket.socket, head: bytes, tail: bytes) -> None:
        try:
            conn.recv(65536)  # the request (or a TLS ClientHello, which gets garbage back)
            conn.sendall(head)
            for i in range(len(tail)):
                if self.stopped.is_set():
                    return
                conn.sendall(tail[i : i + 1])
                if self._hung_up(conn):
                    return
        except OSError:
            return

    def _wait_for_hang_up(self, conn: socket.socket) -> None:
        while not self.stopped.is_set() and not self._hung_up(conn):
            pass

    def _hung_up(self, conn: socket.socket) -> bool:
        """Waits one interval for the client; True once it has closed or reset the connection."""
        try:
            return conn.recv(65536) == b""
        except TimeoutError:
            return False
        except OSError:
            return True

    def stop(self) -> None:
        self.stopped.set()
        self.acceptor.join(5)
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


class BlackHole:
    """A port on several loopback addresses where connects hang: each listener's queue is filled
    and never accepted from, so the kernel drops further SYNs and the client retransmits."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.listeners: list[socket.socket] = []
        self.fillers: list[socket.socket] = []
        first = socket.socket()
        first.bind((addresses[0], 0))
        self.port = first.getsockname()[1]
        self.listeners.append(first)
        for address in addresses[1:]:
            sock = socket.socket()
            sock.bind((address, self.port))
            self.listeners.append(sock)
        for sock, address in zip(self.listeners, addresses, strict=True):
            sock.listen(0)
            self._fill(address)

    def _fill(self, address: str) -> None:
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.3)
            try:
                probe.connect((address, self.port))
            except OSError:
                probe.close()
                return  # the queue is full: connects now hang
            self.fillers.append(probe)
        raise RuntimeError(f"connects to {address}:{self.port} never started to hang")

    def close(self) -> None:
        for sock in self.fillers + self.listeners:
            sock.close()


def hosts_launcher(tmp: Path, names: dict[str, list[str]]) -> str:
    """A prefix for the plugin server's start command that gives it a private ``/etc/hosts``
    mapping each name to its addresses (root and util-linux's ``unshare``, as on CI machines)."""
    hosts = tmp / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, addrs in names.items() for a in addrs))
    return f'unshare -m sh -c \'mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec "$0" "$@"\''


def _tls_server_context() -> ssl.SSLContext:
    """A loopback TLS server context (a test CA's certificate; the key file is gone once loaded)."""
    from tests.harness.mock_as.tls import Pki

    with tempfile.TemporaryDirectory() as tmp:
        return Pki().server_context(tmp, request_client_cert=False)


class _TlsServer:
    def __init__(self) -> None:
        self.ctx = _tls_server_context()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._guarded, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _guarded(self, conn: socket.socket) -> None:
        tls: ssl.SSLSocket | None = None
        try:
            conn.settimeout(5)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            self.serve(tls)
        except Exception:  # noqa: BLE001 - a test server's connection ends, whatever happened on it
            pass
        finally:
            (tls or conn).close()

    def serve(self, tls: ssl.SSLSocket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(3)
        self.listener.close()


class SilentHttps(_TlsServer):
    """Completes the TLS handshake, then never answers (until stop, or the client hangs up)."""

    def serve(self, tls: ssl.SSLSocket) -> None:
        tls.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                if tls.recv(65536) == b"":
                    return
            except TimeoutError:
                continue


class TlsProxy(_TlsServer):
    """An ``https://`` forward proxy: TLS from the client, ``CONNECT host:port``, then a raw tunnel
    (so a TLS server behind it is TLS inside TLS, urllib3's SSLTransport)."""

    def serve(self, tls: ssl.SSLSocket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(4096)
            if not chunk:
                return
            head += chunk
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=5)
        tls.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        tls.setblocking(False)
        upstream.setblocking(False)
        try:
            while not self.stopped.is_set():
                ready, _, _ = select.select([tls, upstream], [], [], 0.2)
                for side in ready:
                    try:
                        data = side.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    if not data:
                        return
                    other = upstream if side is tls else tls
                    other.setblocking(True)
                    other.sendall(data)
                    other.setblocking(False)
                if tls.pending():
                    upstream.sendall(tls.recv(65536))
        finally:
            upstream.close()
