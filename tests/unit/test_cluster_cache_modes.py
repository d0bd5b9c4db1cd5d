"""Behaviour §13.1: Kong's shared Redis record selects one server, Redis Sentinel or Redis Cluster;
each works end to end against real redis-server processes."""

from __future__ import annotations

from typing import Any

from kong_plugins.ai_mcp_oauth2.cluster_cache import KEY_PREFIX, ClusterCache
from kong_plugins.ai_mcp_oauth2.tokens import CachingTokenVerifier
from tests.harness.redis_server import RedisClusterNodes, RedisSentinel, RedisServer

from .fakes import Clock, FakeHttp, ok
from .test_cluster_cache import CLAIMS, INTROSPECT, TOKEN, config, introspections


def connections(server: Any) -> int:
    """Clients connected to ``server`` (a RedisServer or RedisSentinel), this probe excluded."""
    import redis

    probe = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
    try:
        return len(probe.client_list()) - 1
    finally:
        probe.close()


def two_nodes_share(settings: dict[str, Any], look: Any, servers: tuple[Any, ...] = ()) -> None:
    clock = Clock()
    http = FakeHttp().on(INTROSPECT, ok({**CLAIMS, "exp": int(clock.now) + 600}))
    cfg = config(None, redis=settings)
    before = [connections(server) for server in servers]
    for _ in range(2):
        verifier = CachingTokenVerifier(cfg, http, clock, shared=ClusterCache(cfg, clock))  # type: ignore[arg-type]
        assert verifier.verify(TOKEN)["sub"] == "alice"
        verifier.shared.close()  # type: ignore[union-attr]
        assert [connections(server) for server in servers] == before  # nothing left open
    assert introspections(http) == 1
    keys = look()
    assert len(keys) == 1 and keys[0].startswith(KEY_PREFIX.encode())


def test_sentinel_finds_the_master_and_the_nodes_share_through_it() -> None:
    with RedisServer() as master, RedisSentinel(master) as sentinel:
        settings = {"sentinel_master": sentinel.name, "sentinel_nodes": [{"host": "127.0.0.1", "port": sentinel.port}],
                    "sentinel_role": "master", "host": "192.0.2.1", "port": 1}  # fmt: skip
        two_nodes_share(settings, lambda: list(master.client().scan_iter()), (master, sentinel))


def test_redis_cluster_routes_entry_and_lock_to_one_slot() -> None:
    with RedisClusterNodes() as cluster:
        first = cluster.nodes[0]
        settings = {"cluster_nodes": [{"ip": "127.0.0.1", "port": first.port}], "host": "192.0.2.1", "port": 1}

        def keys() -> list[bytes]:
            return [key for node in cluster.nodes for key in node.client().scan_iter()]

        two_nodes_share(settings, keys, tuple(cluster.nodes))
