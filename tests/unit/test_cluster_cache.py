"""Behaviour §13: the cluster cache, against a real redis-server (tests/harness/redis_server.py).

Two ``CachingTokenVerifier``/``TokenExchanger`` objects sharing one Redis stand for two Kong nodes;
the faults a node must live through (Redis gone, stalled, answering the wrong thing, entries
moved or forged) each get a test that fails without the rule it checks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest
import redis

from kong_plugins.ai_mcp_oauth2 import cluster_cache, metrics
from kong_plugins.ai_mcp_oauth2.cluster_cache import (
    KEY_PREFIX,
    ClusterCache,
    config_context,
    derive,
    seal,
    shared_items,
    unseal,
)
from kong_plugins.ai_mcp_oauth2.config import parse_config, warnings
from kong_plugins.ai_mcp_oauth2.errors import ConfigError, InvalidToken, Unavailable
from kong_plugins.ai_mcp_oauth2.schema import Config
from kong_plugins.ai_mcp_oauth2.token_exchange import TokenExchanger
from kong_plugins.ai_mcp_oauth2.tokens import CachingTokenVerifier

from .conftest import kong_config
from .fakes import ISSUER, RESOURCE, Clock, FakeHttp, in_threads, join, ok

INTROSPECT = ISSUER + "/introspect"
TOKEN_ENDPOINT = ISSUER + "/token"
TOKEN = "opaque-token-A-0123456789"
CLAIMS = {"active": True, "sub": "alice", "aud": RESOURCE, "iss": ISSUER, "scope": "mcp:tools"}


def config(redis_db: Any, **overrides: Any) -> Config:
    settings = {"host": "127.0.0.1", "port": redis_db.port} if redis_db is not None else {}
    settings.update(overrides.pop("redis", {}))
    fields: dict[str, Any] = {
        "introspection_endpoint": INTROSPECT,
        "client_id": "gw",
        "client_secret": "gw-secret",
        "client_auth": "client_secret_post",
        "cluster_cache_strategy": "redis",
        "cluster_cache_redis": settings,
    }
    return parse_config(kong_config(**{**fields, **overrides}))


class CountingClient:
    """The real client, counting the commands it is asked for (by name)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.commands: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if name in ("get", "set", "mget", "eval"):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.commands.append(name)
                return attribute(*args, **kwargs)

            return counted
        return attribute


class Node:
    """One Kong node's verifier, with its own counting client on the shared Redis."""

    def __init__(self, cfg: Config, http: FakeHttp, clock: Clock, factory: Any = None) -> None:
        self.clients: list[CountingClient] = []

        def counting(settings: Any) -> CountingClient:
            client = CountingClient(cluster_cache.connect(settings))
            self.clients.append(client)
            return client

        self.shared = ClusterCache(cfg, clock, factory or counting)
        self.verifier = CachingTokenVerifier(cfg, http, clock, shared=self.shared)  # type: ignore[arg-type]

    @property
    def commands(self) -> list[str]:
        return [c for client in self.clients for c in client.commands]


def introspections(http: FakeHttp) -> int:
    return sum(1 for _, url, _ in http.calls if url == INTROSPECT)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def active_in(clock: Clock) -> dict[str, Any]:
    return {**CLAIMS, "exp": int(clock.now) + 600}


# ---------------------------------------------------------------------------- sealing


def test_the_redis_key_and_the_sealing_key_are_distinct_derivations_of_every_input() -> None:
    context = b"c" * 32
    slot = derive("introspection", context, [TOKEN])
    assert slot.key.startswith(KEY_PREFIX + "introspection:{") and slot.key.endswith("}")
    assert slot.lock == slot.key + ":lock"
    assert TOKEN not in slot.key
    assert derive("introspection", context, [TOKEN]).key == slot.key  # every node finds the same key
    others = [
        derive("introspection", context, [TOKEN + "x"]),
        derive("introspection", b"d" * 32, [TOKEN]),
        derive("token_exchange", context, [TOKEN]),
        derive("token_exchange", context, [TOKEN, "actor"]),
        derive("token_exchange", context, [TOKEN + "actor"]),  # secrets are length-framed, not concatenated
    ]
    assert len({slot.key, *(other.key for other in others)}) == 1 + len(others)
    sealed = seal(slot, {"sub": "alice"}, 5.0)
    for other in others:
        assert unseal(other, sealed) is None
    assert unseal(slot, sealed) == ({"sub": "alice"}, 5.0)


def test_a_sealed_value_opens_only_whole_and_in_its_own_slot() -> None:
    slot = derive("introspection", b"c" * 32, [TOKEN])
    sealed = seal(slot, {"sub": "alice"}, 5.0)
    assert b"alice" not in sealed
    for i in range(len(sealed)):  # any single flipped bit
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        assert unseal(slot, bytes(tampered)) is None
    assert unseal(slot, sealed[:-1]) is None
    assert unseal(slot, b"") is None
    assert unseal(slot, json.dumps({"until": 9e9, "value": {"sub": "mallory"}}).encode()) is None
    assert unseal(slot, b"\x01" + b"\x00" * 64) is None
    assert unseal(slot, sealed + b"\x00" * cluster_cache.MAX_VALUE) is None


def test_the_context_is_the_whole_config_but_where_redis_is(redis_db: Any) -> None:
    base = config(redis_db)
    assert config_context(config(redis_db, redis={"host": "localhost", "password": "x"})) == config_context(base)
    assert config_context(config(redis_db, cluster_cache_items=["introspection"])) == config_context(base)
    assert config_context(config(redis_db, client_secret="other")) != config_context(base)
    assert config_context(config(redis_db, args={"extra": "1"})) != config_context(base)
    assert config_context(config(redis_db, insecure_relaxed_audience_validation=True)) != config_context(base)


# ---------------------------------------------------------------------------- configuration


def test_kongs_shared_redis_record_reads_with_kongs_defaults(redis_db: Any) -> None:
    read = parse_config(kong_config(cluster_cache_strategy="redis")).cluster_cache_redis
    assert (read.host, read.port, read.database, read.ssl, read.ssl_verify) == ("127.0.0.1", 6379, 0, False, True)
    assert (read.connect_timeout, read.send_timeout, read.read_timeout) == (2000, 2000, 2000)
    assert (read.keepalive_pool_size, read.cluster_max_redirections) == (256, 5)
    nodes = parse_config(kong_config(cluster_cache_redis={"cluster_nodes": [{"port": 7001}, {"ip": "10.0.0.2"}]}))
    assert [(n.ip, n.port) for n in nodes.cluster_cache_redis.cluster_nodes] == [
        ("127.0.0.1", 7001),
        ("10.0.0.2", 6379),
    ]
    assert parse_config(kong_config()).cluster_cache_items == ("introspection", "token_exchange")
    assert "password" not in repr(config(redis_db, redis={"password": "hunter2-secret"}))
    assert "hunter2-secret" not in repr(config(redis_db, redis={"password": "hunter2-secret"}))


@pytest.mark.parametrize(
    ("redis_record", "field"),
    [
        ({"sentinel_master": "mymaster"}, "cluster_cache_redis.sentinel_nodes"),
        ({"sentinel_nodes": [{"host": "s1"}]}, "cluster_cache_redis.sentinel_master"),
        ({"sentinel_master": "m", "sentinel_nodes": [{}], "cluster_nodes": [{}]}, "cluster_cache_redis.cluster_nodes"),
        ({"port": 70000}, "cluster_cache_redis.port"),
        ({"cluster_nodes": []}, "cluster_cache_redis.cluster_nodes"),
        ({"sentinel_role": "primary"}, "cluster_cache_redis.sentinel_role"),
        ({"keepalive_pool_size": 0}, "cluster_cache_redis.keepalive_pool_size"),
    ],
)
def test_an_incoherent_redis_record_is_a_config_error_naming_the_field(redis_record: Any, field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(kong_config(cluster_cache_strategy="redis", cluster_cache_redis=redis_record))
    assert raised.value.field == field


def test_what_is_shared_follows_the_items_and_the_local_caches(redis_db: Any) -> None:
    exchange = {"enabled": True, "token_endpoint": TOKEN_ENDPOINT, "client_auth": "none"}
    both = config(redis_db, token_exchange=exchange, passthrough_credentials=True)
    assert shared_items(both) == {"introspection", "token_exchange"}
    assert shared_items(config(redis_db, cluster_cache_items=[])) == set()
    assert shared_items(config(redis_db, cache_introspection=False)) == set()
    no_exchange_cache = {**exchange, "cache": {"enabled": False, "ttl": 60}}
    assert shared_items(config(redis_db, token_exchange=no_exchange_cache, passthrough_credentials=True)) == {
        "introspection"
    }
    assert shared_items(config(redis_db, cluster_cache_strategy="off")) == set()
    jwt_only = parse_config(kong_config(cluster_cache_strategy="redis"))
    assert shared_items(jwt_only) == set()
    assert any(w.startswith("cluster_cache_strategy: redis shares nothing") for w in warnings(jwt_only))
    assert not any(w.startswith("cluster_cache_strategy") for w in warnings(config(redis_db)))


# ---------------------------------------------------------------------------- two nodes


def test_a_token_introspected_on_one_node_is_a_redis_hit_on_another(redis_db, clock, active_in) -> None:
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    cfg = config(redis_db)
    a, b = Node(cfg, http, clock), Node(cfg, http, clock)
    assert a.verifier.verify(TOKEN)["sub"] == "alice"
    assert b.verifier.verify(TOKEN)["sub"] == "alice"
    assert introspections(http) == 1
    b_commands = len(b.commands)
    b.verifier.verify(TOKEN)  # now in b's local cache: no Redis call
    assert len(b.commands) == b_commands == 1  # one GET
    (key,) = [k for k in redis_db.values() if not k.endswith(b":lock")]
    ttl = redis_db.client().pttl(key)
    assert 0 < ttl <= 600_000


def test_a_redis_dump_holds_no_claim_and_no_token(redis_db, clock, active_in) -> None:
    http = FakeHttp().on(INTROSPECT, ok({**active_in, "email": "alice@example.com"}))
    exchanged = "exchanged-token-XYZ-987654321"
    http.on(
        TOKEN_ENDPOINT,
        ok(
            {
                "access_token": exchanged,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 300,
            }
        ),
    )
    cfg = config(
        redis_db,
        token_exchange={"enabled": True, "token_endpoint": TOKEN_ENDPOINT, "client_auth": "none"},
        passthrough_credentials=True,
    )
    node = Node(cfg, http, clock)
    node.verifier.verify(TOKEN)
    TokenExchanger(cfg, http, clock, node.shared).exchange(  # type: ignore[arg-type]
        TOKEN, "actor-token-secret"
    )
    dump = redis_db.values()
    assert len(dump) == 2
    everything = b"".join(k + v for k, v in dump.items())
    for secret in (TOKEN, exchanged, "actor-token-secret", "alice", "mcp:tools", ISSUER, "gw-secret"):
        assert secret.encode() not in everything


def test_an_entry_moved_to_another_tokens_key_is_a_miss_never_an_answer(redis_db, clock, active_in) -> None:
    http = FakeHttp().on(INTROSPECT, ok(active_in), ok({"active": False}))
    cfg = config(redis_db)
    node = Node(cfg, http, clock)
    node.verifier.verify(TOKEN)
    stolen = redis_db.client().get(node.shared.slot("introspection", [TOKEN]).key)
    victim = node.shared.slot("introspection", ["other-token"])
    redis_db.client().set(victim.key, stolen)
    other = Node(cfg, http, clock)
    with pytest.raises(InvalidToken):
        other.verifier.verify("other-token")  # the authorization server's answer: inactive
    assert introspections(http) == 2


def test_a_forged_or_garbled_entry_is_a_miss_and_is_replaced(redis_db, clock, active_in) -> None:
    registry = metrics.PrometheusMetrics()
    metrics.install(registry)
    try:
        http = FakeHttp().on(INTROSPECT, ok(active_in))
        cfg = config(redis_db)
        node = Node(cfg, http, clock)
        slot = node.shared.slot("introspection", [TOKEN])
        redis_db.client().set(slot.key, json.dumps({"until": 9e9, "value": {**active_in, "sub": "mallory"}}))
        assert node.verifier.verify(TOKEN)["sub"] == "alice"
        assert introspections(http) == 1
        assert unseal(slot, redis_db.client().get(slot.key)) is not None  # the real answer took its place
        assert (
            registry.registry.get_sample_value(
                "ai_mcp_oauth2_cache_lookups_total", {"cache": "tokens", "layer": "redis", "outcome": "invalid"}
            )
            == 1
        )
    finally:
        metrics.install(metrics.NOOP)


def test_a_shared_answer_is_checked_again_by_this_nodes_claim_rules(redis_db, clock, active_in) -> None:
    """An entry sealed correctly (a node with the same config and the token) whose claims this node
    would refuse: it is not used; the authorization server is asked."""
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    cfg = config(redis_db)
    node = Node(cfg, http, clock)
    slot = node.shared.slot("introspection", [TOKEN])
    wrong_audience = {**active_in, "aud": "https://elsewhere.example/mcp"}
    redis_db.client().set(slot.key, seal(slot, wrong_audience, clock.now + 600))
    assert node.verifier.verify(TOKEN)["aud"] == RESOURCE
    assert introspections(http) == 1


def test_a_shared_answer_stays_locally_only_for_the_time_it_has_left(redis_db, clock, active_in) -> None:
    http = FakeHttp().on(INTROSPECT, ok({"active": False}))  # the token was revoked meanwhile
    cfg = config(redis_db)
    node = Node(cfg, http, clock)
    slot = node.shared.slot("introspection", [TOKEN])
    redis_db.client().set(slot.key, seal(slot, active_in, clock.now + 30), px=30_000)
    assert node.verifier.verify(TOKEN)["sub"] == "alice"
    assert introspections(http) == 0
    clock.now += 31  # the shared entry's time is over (the claims' exp is not): asked again
    redis_db.flush()
    with pytest.raises(InvalidToken):
        node.verifier.verify(TOKEN)
    assert introspections(http) == 1


def test_inactive_answers_and_errors_are_never_shared(redis_db, clock) -> None:
    http = FakeHttp().on(INTROSPECT, ok({"active": False}))
    node = Node(config(redis_db), http, clock)
    with pytest.raises(InvalidToken):
        node.verifier.verify(TOKEN)
    http.on(INTROSPECT, ok({}, status=500))
    with pytest.raises(Unavailable):
        node.verifier.verify("another-token")
    assert redis_db.values() == {}  # no entry, and no lock left behind


def test_without_local_caching_nothing_goes_to_redis(redis_db, clock, active_in) -> None:
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    node = Node(config(redis_db, cache_introspection=False), http, clock)
    node.verifier.verify(TOKEN)
    node.verifier.verify(TOKEN)
    assert introspections(http) == 2
    assert node.commands == [] and node.verifier.shared is None


def test_exchanges_are_shared_by_subject_and_actor_token(redis_db, clock, active_in) -> None:
    http = FakeHttp()
    answers = iter(range(100))
    http.on(
        TOKEN_ENDPOINT,
        lambda *a, **k: ok(
            {"access_token": f"up-{next(answers)}", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
             "token_type": "Bearer", "expires_in": 300}
        ),
    )  # fmt: skip
    exchange = {"enabled": True, "token_endpoint": TOKEN_ENDPOINT, "client_auth": "none"}
    cfg = config(redis_db, token_exchange=exchange, passthrough_credentials=True)
    a = TokenExchanger(cfg, http, clock, ClusterCache(cfg, clock))  # type: ignore[arg-type]
    b = TokenExchanger(cfg, http, clock, ClusterCache(cfg, clock))  # type: ignore[arg-type]
    assert a.exchange(TOKEN, None) == b.exchange(TOKEN, None) == "up-0"
    assert a.exchange(TOKEN, "actor-1") == b.exchange(TOKEN, "actor-1") == "up-1"
    assert b.exchange(TOKEN, "actor-2") == "up-2"
    assert len(http.calls) == 3
    key = a.shared.slot("token_exchange", [TOKEN, "actor-1"]).key  # type: ignore[union-attr]
    assert 0 < redis_db.client().pttl(key) <= (300 - 10) * 1000


def test_concurrent_first_requests_on_two_nodes_make_one_introspection(redis_db, clock, active_in) -> None:
    release = threading.Event()

    def slow(*_a: Any, **_k: Any) -> Any:
        release.wait(5)
        return ok(active_in)

    http = FakeHttp().on(INTROSPECT, slow)
    cfg = config(redis_db)
    nodes = [Node(cfg, http, clock), Node(cfg, http, clock)]
    threads, results = in_threads(40, lambda i: nodes[i % 2].verifier.verify(TOKEN)["sub"])
    threading.Timer(0.3, release.set).start()
    join(threads)
    assert results == ["alice"] * 40
    assert introspections(http) == 1


def test_a_node_waits_for_another_nodes_call_at_most_timeout(redis_db, clock, active_in) -> None:
    """A lock nobody releases (its holder died): the waiting node calls the server itself."""
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    cfg = config(redis_db, timeout=200)
    node = Node(cfg, http, clock)
    slot = node.shared.slot("introspection", [TOKEN])
    redis_db.client().set(slot.lock, "someone-else", px=60_000)
    assert node.verifier.verify(TOKEN)["sub"] == "alice"
    assert introspections(http) == 1
    assert node.commands.count("mget") >= 1
    assert redis_db.client().get(slot.lock) == b"someone-else"  # another node's lock is not released


# ---------------------------------------------------------------------------- Redis failing


def test_redis_down_means_the_node_works_as_without_it_and_skips_redis_a_while(
    redis_db, clock, active_in, caplog
) -> None:
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    cfg = config(redis_db, redis={"port": 1, "password": "hunter2-secret", "connect_timeout": 200})
    node = Node(cfg, http, clock)
    with caplog.at_level(logging.WARNING, logger="ai_mcp_oauth2"):
        assert node.verifier.verify(TOKEN)["sub"] == "alice"
        assert node.verifier.verify("token-2")["sub"] == "alice"
    assert introspections(http) == 2
    assert len(node.commands) == 1  # the first GET failed; the second request skipped Redis
    (line,) = [r.getMessage() for r in caplog.records]
    assert "get failed on Redis 127.0.0.1:1/0 (ConnectionError)" in line
    assert "hunter2-secret" not in caplog.text


def test_redis_is_tried_again_after_the_backoff(redis_db, clock, active_in, monkeypatch) -> None:
    monkeypatch.setattr(cluster_cache, "BACKOFF", 0.2)
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    cfg = config(redis_db)
    node = Node(cfg, http, clock)
    redis_db.kill()
    try:
        node.verifier.verify(TOKEN)
        assert introspections(http) == 1
    finally:
        redis_db.start()
    node.verifier.verify("token-2")  # within the backoff: Redis not asked
    assert [k for k in redis_db.values()] == []
    time.sleep(0.3)
    node.verifier.verify("token-3")
    assert len(redis_db.values()) == 1  # token-3 shared: Redis used again, by itself


class Garbage:
    """A client whose every reply has the wrong shape (a proxy or server gone wrong)."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.calls = 0

    def get(self, *_a: Any, **_k: Any) -> Any:
        self.calls += 1
        return self.reply

    set = mget = eval = get

    def close(self) -> None:
        pass


@pytest.mark.parametrize("reply", [42, "text", ["a", "b", "c"], {"x": 1}])
def test_a_reply_of_the_wrong_shape_is_a_redis_failure(redis_db, clock, active_in, reply) -> None:
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    garbage = Garbage(reply)
    node = Node(config(redis_db), http, clock, factory=lambda _s: garbage)
    assert node.verifier.verify(TOKEN)["sub"] == "alice"
    assert introspections(http) == 1
    assert node.shared._skip_until > 0
    calls = garbage.calls
    node.verifier.verify("token-2")
    assert garbage.calls == calls  # skipped during the backoff


def test_a_stalled_redis_costs_at_most_its_read_timeout(redis_db, clock, active_in) -> None:
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    node = Node(config(redis_db, redis={"read_timeout": 300, "send_timeout": 300}), http, clock)
    redis_db.pause(1)
    try:
        assert node.verifier.verify(TOKEN)["sub"] == "alice"
    finally:
        redis_db.client().execute_command("CLIENT", "UNPAUSE")
    assert introspections(http) == 1
    assert node.shared._skip_until > 0


def test_redis_refusing_auth_is_a_failure_without_the_password_in_the_log(clock, active_in, caplog) -> None:
    from tests.harness.redis_server import RedisServer

    with RedisServer(password="the-right-one") as guarded:
        http = FakeHttp().on(INTROSPECT, ok(active_in))
        node = Node(config(guarded, redis={"password": "the-wrong-one"}), http, clock)
        with caplog.at_level(logging.WARNING, logger="ai_mcp_oauth2"):
            assert node.verifier.verify(TOKEN)["sub"] == "alice"
        assert "the-wrong-one" not in caplog.text and "the-right-one" not in caplog.text
        assert "AuthenticationError" in caplog.text
        good = Node(config(guarded, redis={"password": "the-right-one"}), http, clock)
        good.verifier.verify(TOKEN)
        assert guarded.client().dbsize() == 1


def test_the_client_never_retries(redis_db) -> None:
    client = cluster_cache.connect(config(redis_db).cluster_cache_redis)
    connection = client.connection_pool.make_connection()
    assert connection.retry.get_retries() == 0
    assert connection.protocol == 2  # RESP2 as Kong's connector: no HELLO, older servers and proxies work
    assert client.connection_pool.max_connections == 256
    with pytest.raises(redis.ConnectionError):
        cluster_cache.connect(config(redis_db, redis={"port": 1}).cluster_cache_redis).get("x")


def test_closing_an_instance_closes_its_connections(redis_db, clock, active_in) -> None:
    """Kong replaces instances on every config change: the old one's Redis connections must go."""

    def connected() -> int:
        clients = redis_db.client().client_list()
        return sum(1 for c in clients if c.get("name") != "probe" and c.get("cmd") not in ("client|list", "client"))

    before = connected()
    http = FakeHttp().on(INTROSPECT, ok(active_in))
    cfg = config(redis_db)
    for i in range(5):
        shared = ClusterCache(cfg, clock)
        verifier = CachingTokenVerifier(cfg, http, clock, shared=shared)  # type: ignore[arg-type]
        verifier.verify(f"token-{i}")
        assert connected() > before
        shared.close()
        assert connected() == before
