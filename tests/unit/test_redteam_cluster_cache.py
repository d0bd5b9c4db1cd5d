"""Red team of the cluster cache (behaviour §13): Redis, or whatever answers in its place, must never
hold a request longer than its timeouts, nor make a node allocate what an attacker wrote there.

Each test failed before the fix it names in the commit history; the servers are real (a
redis-server, or a TCP listener that behaves as a broken or hostile Redis would)."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2 import budget, cluster_cache
from kong_plugins.ai_mcp_oauth2.cluster_cache import ClusterCache
from kong_plugins.ai_mcp_oauth2.tokens import CachingTokenVerifier

from .fakes import Clock, FakeHttp, in_threads, join, ok
from .test_cluster_cache import CLAIMS, INTROSPECT, TOKEN, config, introspections


class Listener:
    """A TCP server on loopback standing in for Redis. ``accept=False``: connections complete in the
    kernel's backlog and are never answered (a hung Redis); else every command is answered with the
    start of a 100 kB bulk string dripped one byte every 50 ms (each read gets data well within any
    read timeout, the answer never ends)."""

    def __init__(self, accept: bool) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.closing = threading.Event()
        self.clients: list[socket.socket] = []
        if accept:
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            threading.Thread(target=self._drip, args=(client,), daemon=True).start()

    def _drip(self, client: socket.socket) -> None:
        try:
            client.recv(65536)
            client.sendall(b"$100000\r\n")
            while not self.closing.wait(0.05):
                client.sendall(b"x")
        except OSError:
            pass

    def close(self) -> None:
        self.closing.set()
        self.sock.close()
        for client in self.clients:
            client.close()


@pytest.fixture(autouse=True)
def closed_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every ClusterCache a test makes is closed after it (its Redis connections, as Kong's close)."""
    made: list[ClusterCache] = []
    init = ClusterCache.__init__

    def registering(self: ClusterCache, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ClusterCache, "__init__", registering)
    yield
    for cache in made:
        cache.close()


@pytest.fixture
def hung() -> Iterator[Listener]:
    listener = Listener(accept=False)
    yield listener
    listener.close()


@pytest.fixture
def dripping() -> Iterator[Listener]:
    listener = Listener(accept=True)
    yield listener
    listener.close()


def finished_within(seconds: float, fn: Any) -> Any:
    """``fn()``'s result, failing the test if it has not returned after ``seconds`` (the thread is
    left to end when the fixture closes its server)."""
    threads, results = in_threads(1, lambda _i: fn())
    threads[0].join(seconds)
    assert not threads[0].is_alive(), f"still waiting on Redis after {seconds} s"
    if isinstance(results[0], Exception):
        raise results[0]
    return results[0]


def test_a_hung_redis_cluster_costs_each_concurrent_request_one_timeout_not_one_per_request_before_it(
    hung: Listener,
) -> None:
    """RedisCluster connects in its constructor. Built under the instance's lock, every request that
    queued behind a failing construction built its own in turn: 8 concurrent requests, 8 timeouts for
    the last one (100 would have waited 100 x read_timeout, far past the request budget: a 503)."""
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    timeouts = {"connect_timeout": 300, "send_timeout": 300, "read_timeout": 300}
    cfg = config(None, redis={"cluster_nodes": [{"ip": "127.0.0.1", "port": hung.port}], **timeouts})
    built = []

    def factory(settings: Any) -> Any:
        built.append(time.monotonic())
        return cluster_cache.connect(settings)

    shared = ClusterCache(cfg, clock, factory)
    verifier = CachingTokenVerifier(cfg, http, clock, shared=shared)  # type: ignore[arg-type]
    started = time.monotonic()
    threads, results = in_threads(8, lambda i: verifier.verify(f"token-{i}")["sub"])
    join(threads)
    assert results == ["alice"] * 8
    assert introspections(http) == 8
    assert len(built) == 1  # the others saw the failure and skipped Redis
    assert time.monotonic() - started < 1.5  # one construction (0.3 s), not eight in a row (2.4 s)


@pytest.mark.parametrize("mode", ["server", "sentinel", "cluster"])
def test_a_redis_that_drips_its_answer_costs_at_most_its_timeouts(dripping: Listener, mode: str) -> None:
    """redis-py's socket timeout bounds each read, and a reply dripped a byte at a time never lets one
    time out: the request waited for the whole 100 kB (about 80 minutes) instead of connect_timeout
    plus read_timeout. The same from a sentinel asked for the master, or a cluster node asked for
    its slots."""
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    timeouts = {"connect_timeout": 300, "send_timeout": 300, "read_timeout": 300}
    modes: dict[str, dict[str, Any]] = {
        "server": {"port": dripping.port},
        "sentinel": {"sentinel_master": "m", "sentinel_nodes": [{"host": "127.0.0.1", "port": dripping.port}]},
        "cluster": {"cluster_nodes": [{"ip": "127.0.0.1", "port": dripping.port}]},
    }
    cfg = config(None, redis={**modes[mode], **timeouts})
    verifier = CachingTokenVerifier(cfg, http, clock, shared=ClusterCache(cfg, clock))  # type: ignore[arg-type]
    started = time.monotonic()
    assert finished_within(5, lambda: verifier.verify(TOKEN)["sub"]) == "alice"
    assert time.monotonic() - started < 1.5
    assert introspections(http) == 1


def test_a_dripping_redis_never_spends_the_request_budget(dripping: Listener) -> None:
    """With Kong's 0 (nginx's 60 s, capped here at a quarter of the budget) a slow Redis operation
    must still leave the authorization server most of what is left of the request's budget."""
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    cfg = config(None, redis={"port": dripping.port, "connect_timeout": 0, "send_timeout": 0, "read_timeout": 0})
    verifier = CachingTokenVerifier(cfg, http, clock, shared=ClusterCache(cfg, clock))  # type: ignore[arg-type]

    def within_budget() -> str:
        with budget.request_budget(2.0):
            claims = verifier.verify(TOKEN)
            left = budget.remaining()
        assert left is not None and left > 0.5
        return str(claims["sub"])

    assert finished_within(5, within_budget) == "alice"


def peak_memory(fn: Any) -> int:
    """The most memory Python allocated while ``fn()`` ran, beyond what it held before (bytes)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_a_huge_value_written_over_an_entry_is_not_read_whole(redis_db: Any) -> None:
    """Anyone who can write to Redis finds the entries by their prefix (SCAN) without any token, and
    can grow them to Redis's 512 MB limit: each node then read the whole value on every local miss
    before looking at its length (a 300 MB value: 900 MB more resident memory, 3.5 s)."""
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    cfg = config(redis_db)
    shared = ClusterCache(cfg, clock)
    verifier = CachingTokenVerifier(cfg, http, clock, shared=shared)  # type: ignore[arg-type]
    slot = shared.slot("introspection", [TOKEN])
    redis_db.client().setrange(slot.key, 16 * cluster_cache.MAX_VALUE, b"x")
    assert peak_memory(lambda: verifier.verify(TOKEN)) < 4 * cluster_cache.MAX_VALUE
    assert introspections(http) == 1


def test_a_huge_lock_value_is_not_read_on_every_poll(redis_db: Any) -> None:
    """The same attacker sets each entry's ``:lock`` key to a huge value that never expires: a node
    waiting for the entry read the whole lock value on every poll (every 10 to 200 ms, for
    ``timeout``)."""
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    cfg = config(redis_db, timeout=300)
    shared = ClusterCache(cfg, clock)
    verifier = CachingTokenVerifier(cfg, http, clock, shared=shared)  # type: ignore[arg-type]
    slot = shared.slot("introspection", [TOKEN])
    redis_db.client().setrange(slot.lock, 16 * cluster_cache.MAX_VALUE, b"x")
    assert peak_memory(lambda: verifier.verify(TOKEN)) < 4 * cluster_cache.MAX_VALUE
    assert introspections(http) == 1


@pytest.fixture
def deployment(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """``(cluster_cache_redis settings, its data servers)`` for the mode ``request.param``."""
    from tests.harness.redis_server import RedisClusterNodes, RedisSentinel, RedisServer

    if request.param == "cluster":
        with RedisClusterNodes() as cluster:
            yield {"cluster_nodes": [{"ip": "127.0.0.1", "port": cluster.nodes[0].port}]}, cluster.nodes
    else:
        with RedisServer() as master:
            if request.param == "server":
                yield {"port": master.port}, [master]
            else:
                with RedisSentinel(master) as sentinel:
                    nodes = [{"host": "127.0.0.1", "port": sentinel.port}]
                    yield {"sentinel_master": sentinel.name, "sentinel_nodes": nodes}, [master]


@pytest.mark.parametrize("deployment", ["server", "sentinel", "cluster"], indirect=True)
def test_a_burst_beyond_the_connection_pool_does_not_turn_redis_off(deployment: Any) -> None:
    """More concurrent Redis commands than ``keepalive_pool_size`` on one node (a burst of new tokens
    while Redis is a little slow) is this node's own limit, not Redis failing. With Sentinel (whose
    pool ignored the setting: redis-py's 100) and Redis Cluster, redis-py refuses the command beyond
    it at once; that was taken as a failure and the node skipped Redis for 5 s, every other token
    going to the authorization server meanwhile."""
    settings, servers = deployment
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    a_cfg = config(None, redis=settings)
    a = CachingTokenVerifier(a_cfg, http, clock, shared=ClusterCache(a_cfg, clock))  # type: ignore[arg-type]
    a.verify("seen-on-a")
    b_cfg = config(None, redis={**settings, "keepalive_pool_size": 2})
    b = CachingTokenVerifier(b_cfg, http, clock, shared=ClusterCache(b_cfg, clock))  # type: ignore[arg-type]
    b.verify("warm-up")  # the client exists (Redis Cluster's reads the slots)
    for server in servers:
        server.pause(0.3)  # every command waits: the burst holds its connections at once
    threads, results = in_threads(12, lambda i: b.verify(f"burst-{i}")["sub"])
    join(threads)
    assert results == ["alice"] * 12
    before = introspections(http)
    assert b.verify("seen-on-a")["sub"] == "alice"
    assert introspections(http) == before  # a Redis hit: Redis was not skipped


def test_entries_are_not_shared_across_plugin_versions(redis_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolling upgrade runs two plugin versions on one Redis with one configuration. A later version
    may check answers more strictly (a security fix), and a node re-checks a shared introspection
    only for its time, issuer and audience rules: an answer an earlier version accepted must not be
    taken by a later one. The plugin's version is part of the context."""
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    cfg = config(redis_db)
    old = CachingTokenVerifier(cfg, http, clock, shared=ClusterCache(cfg, clock))  # type: ignore[arg-type]
    old.verify(TOKEN)
    monkeypatch.setattr(cluster_cache, "__version__", "99.0.0", raising=False)
    new = CachingTokenVerifier(cfg, http, clock, shared=ClusterCache(cfg, clock))  # type: ignore[arg-type]
    new.verify(TOKEN)
    assert introspections(http) == 2
    again = CachingTokenVerifier(cfg, http, clock, shared=ClusterCache(cfg, clock))  # type: ignore[arg-type]
    again.verify(TOKEN)
    assert introspections(http) == 2  # nodes of one version still share


def test_with_ssl_the_sentinel_password_never_crosses_the_network_in_clear() -> None:
    """``ssl: true`` protects the sentinels' connections too (Kong's Redis connector uses the same
    connection options for the sentinels). The sentinels were asked in plain text, AUTH with
    ``sentinel_password`` included, whatever ``ssl`` said."""
    received = bytearray()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(5)

    def record() -> None:
        try:
            client, _ = sock.accept()
        except OSError:
            return
        with client:
            client.settimeout(1)
            try:
                while chunk := client.recv(65536):
                    received.extend(chunk)
            except OSError:
                pass

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    sentinel = {"sentinel_master": "m", "sentinel_nodes": [{"host": "127.0.0.1", "port": sock.getsockname()[1]}]}
    secrets = {"sentinel_password": "sentinel-secret-123", "password": "redis-secret-456"}
    timeouts = {"connect_timeout": 300, "send_timeout": 300, "read_timeout": 300}
    cfg = config(None, redis={**sentinel, **secrets, **timeouts, "ssl": True})
    verifier = CachingTokenVerifier(cfg, http, clock, shared=ClusterCache(cfg, clock))  # type: ignore[arg-type]
    try:
        assert verifier.verify(TOKEN)["sub"] == "alice"
    finally:
        thread.join(5)
        sock.close()
    assert received  # the node did talk to its sentinel
    assert b"sentinel-secret-123" not in received and b"redis-secret-456" not in received
