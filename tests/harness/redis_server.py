"""A real ``redis-server`` (Debian's package) on loopback for the cluster-cache tests.

Nothing is persisted (no RDB, no AOF) and the data directory is a temporary one. A test can stop
it abruptly (``kill``), start it again on the same port (``start``), and make it stall
(``pause``: ``CLIENT PAUSE``); ``client()`` is a plain redis-py client for looking inside.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, password: str | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.password = password
        self.directory = tempfile.mkdtemp(prefix="redis-test-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        command = [self.binary or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", self.directory, "--loglevel", "warning",
                   "--enable-debug-command", "local"]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return self
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def client(self, **options: Any) -> redis.Redis:
        """A client of its own; ``options`` go to redis-py (``socket_timeout`` is 5 s unless given)."""
        options = {"socket_timeout": 5, **options}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **options)

    def kill(self) -> None:
        """Stop it at once, as a crash would (SIGKILL)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def pause(self, seconds: float) -> None:
        """Make every client wait ``seconds`` (``CLIENT PAUSE ALL``)."""
        self.client().execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")  # type: ignore[no-untyped-call]

    def values(self) -> dict[bytes, bytes]:
        """Every key and its value (strings only): a dump of the database."""
        client = self.client()
        dump: dict[bytes, bytes] = {}
        for key in client.scan_iter():
            value = client.get(key) or b""
            dump[key.encode() if isinstance(key, str) else key] = value.encode() if isinstance(value, str) else value
        return dump

    def flush(self) -> None:
        self.client().flushall()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
