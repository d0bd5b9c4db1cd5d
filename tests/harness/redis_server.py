"""A real ``redis-server`` (Debian's package) on loopback for the cluster-cache tests.

Nothing is persisted (no RDB, no AOF) and the data directory is a temporary one. A test can stop
it abruptly (``kill``), start it again on the same port (``start``), and make it stall
(``pause``: ``CLIENT PAUSE``); ``client()`` is a plain redis-py client for looking inside.
"""

from __future__ import annotations

import random
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


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisServer:
    def __init__(self, password: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_cluster_port() if "--cluster-enabled" in extra else free_port()
        self.password = password
        self.extra = extra  # more redis-server options, e.g. ("--cluster-enabled", "yes")
        self.directory = tempfile.mkdtemp(prefix="redis-test-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        command = [self.binary or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", self.directory, "--loglevel", "warning",
                   "--enable-debug-command", "local"]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        command += self.extra
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return self
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
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


class RedisSentinel:
    """A real Redis Sentinel (``redis-server --sentinel``) watching ``master`` under ``name``."""

    def __init__(self, master: RedisServer, name: str = "mymaster") -> None:
        self.master, self.name = master, name
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="redis-sentinel-")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisSentinel:
        conf = f"{self.directory}/sentinel.conf"
        with open(conf, "w") as out:
            out.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n")
            out.write(f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 1\n")
        binary = shutil.which("redis-server") or "redis-server"
        self.process = subprocess.Popen(
            [binary, conf, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        while True:
            try:
                if client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name):  # type: ignore[no-untyped-call]
                    return self
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis sentinel did not start")
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class RedisClusterNodes:
    """A real three-master Redis Cluster (``cluster-enabled``, slots assigned by ``redis-cli --cluster create``)."""

    def __init__(self) -> None:
        self.nodes = [
            RedisServer(extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")) for _ in range(3)
        ]

    def __enter__(self) -> RedisClusterNodes:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or "redis-cli"
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-yes"], check=True, capture_output=True, timeout=30
        )
        deadline = time.monotonic() + 20
        while not all(self._ready(node) for node in self.nodes):  # every node agrees, not just the first
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not become ready")
            time.sleep(0.05)
        return self

    @staticmethod
    def _ready(node: RedisServer) -> bool:
        info = node.client().execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        return b"cluster_state:ok" in info and b"cluster_known_nodes:3" in info

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.close()
