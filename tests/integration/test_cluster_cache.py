"""Behaviour §13 end to end: two Kong nodes (two stand-ins, each with its own plugin server in the
default gevent mode) sharing a real redis-server, in front of the mock authorization server and
the echo upstream: one introspection and one exchange per token across the nodes under concurrent
load, and the Redis layer in the metrics. The faults are in tests/faults/test_cluster_cache_faults.py.
"""

from __future__ import annotations

from typing import Any

import requests

from tests.harness import cluster
from tests.harness import stack as C
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.redis_server import RedisServer
from tests.harness.upstream import EchoUpstream

from .test_metrics import sample, samples

SECRET = "kong-secret"
EACH = 25  # concurrent requests per node


def introspection(authz: MockAuthorizationServer, **extra: Any) -> dict[str, Any]:
    return C.plugin_config(
        authorization_servers=[authz.issuer],
        introspection_endpoint=authz.introspection_endpoint,
        client_id="kong",
        client_secret=SECRET,
        claim_to_header=[{"claim": "sub", "header": "X-User"}],
        **extra,
    )


def exchange(authz: MockAuthorizationServer) -> dict[str, Any]:
    options = {"enabled": True, "token_endpoint": authz.token_endpoint, "client_id": "kong", "client_secret": SECRET}
    return introspection(authz, passthrough_credentials=True, token_exchange=options)


def ready(kongs: list[KongStandIn], authz: MockAuthorizationServer, *slow: str) -> None:
    """Each node's plugin instance started (a first request) and the ``slow`` endpoints of the
    authorization server answering after 300 ms, so that both nodes are sure to miss in Redis
    before either has stored the answer: only the lock keeps them to one call."""
    warm = authz.issue_opaque()
    assert [C.call(kong, warm).status_code for kong in kongs] == [200, 200]
    authz.slow_seconds = 0.3
    for endpoint in slow:
        authz.fault(endpoint, "slow")


def test_two_nodes_introspect_a_new_token_once_under_concurrent_load(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer, upstream: EchoUpstream
) -> None:
    kongs = cluster.nodes(start_kong, cluster.with_redis(introspection(authz), redis_db.port, timeout_ms=2000))
    ready(kongs, authz, "introspection")
    token = authz.issue_opaque({"sub": "burst-user-q8"})
    before = len(upstream.requests)
    assert cluster.burst(kongs, token, EACH) == [200] * (2 * EACH)
    assert cluster.calls_for(authz, "introspection", token) == 1
    assert cluster.forwarded_users(upstream, before) == ["burst-user-q8"] * (2 * EACH)
    dump = redis_db.values()  # sealed entries (this token's and the warm-up's), locks released; nothing readable
    assert len(dump) == 2 and all(key.startswith(b"ai-mcp-oauth2:introspection:{") for key in dump)
    assert not any(secret in key + value for key, value in dump.items() for secret in (token.encode(), b"burst-user"))


def test_two_nodes_exchange_a_token_once_under_concurrent_load(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer, upstream: EchoUpstream
) -> None:
    kongs = cluster.nodes(start_kong, cluster.with_redis(exchange(authz), redis_db.port, timeout_ms=2000))
    ready(kongs, authz, "introspection", "token")
    token = authz.issue_opaque({"sub": "exchanged-user"})
    before = len(upstream.requests)
    assert cluster.burst(kongs, token, EACH) == [200] * (2 * EACH)
    assert cluster.calls_for(authz, "token", token) == 1
    assert cluster.calls_for(authz, "introspection", token) == 1
    sent = {r["headers"]["authorization"][0] for r in upstream.requests[before:]}
    assert len(upstream.requests) - before == 2 * EACH and len(sent) == 1  # every node forwards the one exchange
    issued = authz.validate_token(sent.pop().removeprefix("Bearer "))
    assert issued is not None and issued["sub"] == "exchanged-user"
    kinds = sorted(key.split(b":")[1] for key in redis_db.values())
    assert kinds == [b"introspection", b"introspection", b"token_exchange", b"token_exchange"]  # with the warm-up


def test_without_the_cluster_cache_each_node_introspects_the_token(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer
) -> None:
    """The same load with ``cluster_cache_strategy: off``: one introspection per node (what the tests
    above measure), and nothing in Redis."""
    config = {**cluster.with_redis(introspection(authz), redis_db.port), "cluster_cache_strategy": "off"}
    kongs = cluster.nodes(start_kong, config)
    ready(kongs, authz, "introspection")
    token = authz.issue_opaque()
    assert cluster.burst(kongs, token, EACH) == [200] * (2 * EACH)
    assert cluster.calls_for(authz, "introspection", token) == 2
    assert redis_db.values() == {}


def test_the_metrics_count_redis_hits_misses_and_errors(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer, http: requests.Session
) -> None:
    port = C.free_port()
    config = cluster.with_redis(introspection(authz), redis_db.port)
    scraped = start_kong(C.declarative(config), flags=f"--metrics-address 127.0.0.1:{port}")
    other = start_kong(C.declarative(config))

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

    def redis_lookups(found: Any, outcome: str) -> float:
        return sample(found, "ai_mcp_oauth2_cache_lookups_total", cache="tokens", layer="redis", outcome=outcome)

    def redis_errors(found: Any) -> float:
        return sum(v for (name, _), v in found.items() if name == "ai_mcp_oauth2_redis_errors_total")

    seen_elsewhere, new = authz.issue_opaque(), authz.issue_opaque()
    assert C.call(other, seen_elsewhere, http=http).status_code == 200  # introspected there, shared
    assert C.call(scraped, seen_elsewhere, http=http).status_code == 200  # a Redis hit here
    assert C.call(scraped, new, http=http).status_code == 200  # a Redis miss, then introspected
    assert authz.count("introspection") == 2
    found = scrape()
    assert (redis_lookups(found, "hit"), redis_lookups(found, "miss"), redis_lookups(found, "invalid")) == (1, 1, 0)
    assert redis_errors(found) == 0

    redis_db.kill()
    try:
        assert C.call(scraped, authz.issue_opaque(), http=http).status_code == 200
        assert redis_errors(scrape()) >= 1
    finally:
        redis_db.start()
