"""Behaviour §13.4/§13.5 under faults, with real parts: two Kong nodes (two stand-ins, each with its
own plugin server in the default gevent mode), the mock authorization server and a real
redis-server (tests/harness/redis_server.py) killed, restarted, stalled, answering garbage (a fake
server), holding forged entries or refusing the configured password.

Whatever Redis does, a node answers as it would without it: an active token 200, an inactive,
revoked or unknown one 401, never a 503 because of Redis, and the upstream (the echo server)
receives only requests whose token the authorization server accepted: the plugin's
``claim_to_header`` puts each accepted token's ``sub`` in ``X-User``, and the tests compare what
arrived with what was expected.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import json
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kong_plugins.ai_mcp_oauth2.cluster_cache import BACKOFF, KEY_PREFIX, config_context, derive
from kong_plugins.ai_mcp_oauth2.config import parse_config
from tests.harness import cluster
from tests.harness import stack as C
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.redis_server import RedisServer
from tests.harness.upstream import EchoUpstream

from .conftest import introspection_config
from .test_soak import RSS_GROWTH_KIB, held, run, socket_fds

INACTIVE = "The access token is not active"


# ------------------------------------------------------------------------------------- load on nodes
@dataclass
class Answer:
    phase: str
    token: str
    expected: int
    sub: str  # the X-User the upstream gets when it is accepted
    status: int
    body: str


class Load:
    """Requests from ``workers`` threads, round robin over the nodes, until :meth:`stop`: new active
    tokens, active tokens already seen, inactive, revoked and unknown ones, each answer kept with the
    status it must have and labelled with the :attr:`phase` it was sent in."""

    def __init__(self, authz: MockAuthorizationServer, kongs: list[KongStandIn], workers: int = 6) -> None:
        self.authz = authz
        self.kongs = kongs
        self.known = [authz.issue_opaque({"sub": f"known-{i}"}) for i in range(4)]
        self.revoked = [authz.issue_opaque({"sub": f"revoked-{i}"}) for i in range(4)]
        for token in self.revoked:
            authz.revoke(token)
        self.phase = "up"
        self.answers: list[Answer] = []
        self._next = itertools.count()
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._work) for _ in range(workers)]

    def _token(self, i: int) -> tuple[str, int, str]:
        kind = i % 5
        if kind == 0:
            return self.authz.issue_opaque({"sub": f"new-{i}"}), 200, f"new-{i}"
        if kind == 1:
            return self.known[i % 4], 200, f"known-{i % 4}"
        if kind == 2:
            return self.authz.issue_opaque({"sub": f"inactive-{i}"}, active=False), 401, ""
        if kind == 3:
            return self.revoked[i % 4], 401, ""
        return f"unknown-{i}-{os.urandom(8).hex()}", 401, ""

    def _work(self) -> None:
        with C.session() as http:
            while not self._stopped.is_set():
                i = next(self._next)
                token, expected, sub = self._token(i)
                phase = self.phase
                response = C.call(self.kongs[i % len(self.kongs)], token, http=http)
                self.answers.append(Answer(phase, token, expected, sub, response.status_code, response.text))

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, phase: str, answers: int) -> None:
        """Until ``answers`` requests sent in ``phase`` are answered."""
        assert C.wait_until(lambda: sum(a.phase == phase for a in self.answers) >= answers, timeout=30), phase

    def stop(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join()

    def wrong(self) -> list[Answer]:
        return [a for a in self.answers if a.status != a.expected or (a.status == 401 and INACTIVE not in a.body)]

    def accepted(self) -> Counter[str]:
        return Counter(a.sub for a in self.answers if a.status == 200)


def assert_correct(load: Load, upstream: EchoUpstream, before: int) -> None:
    assert load.wrong() == []
    assert Counter(cluster.forwarded_users(upstream, before)) == load.accepted(), "the upstream got another set"


def test_redis_killed_mid_load_and_restarted(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer, upstream: EchoUpstream
) -> None:
    kongs = cluster.nodes(start_kong, cluster.with_redis(introspection_config(authz), redis_db.port))
    before = len(upstream.requests)
    load = Load(authz, kongs).start()
    try:
        load.wait("up", 40)
        redis_db.kill()
        load.phase = "down"
        load.wait("down", 60)
        redis_db.start()
        restarted = time.monotonic()
        load.phase = "restarted"
        load.wait("restarted", 40)
    finally:
        load.stop()
        if redis_db.process is None:
            redis_db.start()
    assert_correct(load, upstream, before)
    for kong in kongs:  # each node met the outage, said so once, and nothing else went wrong
        assert len(cluster.redis_warnings(kong)) == 1, kong.server_output
        assert C.server_errors(kong) == []

    # Recovery by itself: once the nodes try Redis again (BACKOFF after their last failure, which
    # was before the restart), a new token is introspected once across both.
    time.sleep(max(0.0, restarted + BACKOFF + 0.5 - time.monotonic()))
    token = authz.issue_opaque({"sub": "after-restart"})
    assert cluster.burst(kongs, token, 10) == [200] * 20
    assert cluster.calls_for(authz, "introspection", token) == 1


# ------------------------------------------------------------------------------------- stalled Redis
@contextmanager
def stalled(server: RedisServer, how: str, seconds: float = 2.0) -> Iterator[None]:
    """Redis stalled for ``seconds`` (``CLIENT PAUSE ALL`` or ``DEBUG SLEEP``) from the moment the
    block is entered; on leaving, until it answers again."""
    sleeper = None
    if how == "client-pause":
        server.pause(seconds)
    else:
        probe = server.client(socket_timeout=0.1, socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
        probe.ping()
        sleeper = threading.Thread(target=lambda: server.client().execute_command("DEBUG", "SLEEP", seconds))
        sleeper.start()

        def asleep() -> bool:
            try:
                probe.ping()
                return False
            except redis.TimeoutError:
                return True

        assert C.wait_until(asleep, timeout=5, interval=0.01)
    try:
        yield
    finally:
        if sleeper is not None:
            sleeper.join()
        server.client(socket_timeout=seconds + 5).ping()


@pytest.mark.parametrize("how", ["client-pause", "debug-sleep"])
def test_a_stalled_redis_costs_a_bounded_wait_never_an_answer(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer, upstream: EchoUpstream, how: str
) -> None:
    kongs = cluster.nodes(start_kong, cluster.with_redis(introspection_config(authz), redis_db.port))
    seen = authz.issue_opaque({"sub": "seen"})
    assert cluster.burst(kongs, seen, 1) == [200, 200]  # in each node's local cache
    new = authz.issue_opaque({"sub": "new"})
    inactive = authz.issue_opaque(active=False)
    before = len(upstream.requests)
    sent = [functools.partial(C.call, kong, token) for kong in kongs for token in (new, new, seen, inactive)]
    with stalled(redis_db, how):
        answers = cluster.together(sent)
    assert [a.status_code for a in answers] == [200, 200, 200, 401] * 2, [a.text for a in answers]
    assert all(INACTIVE in a.text for a in answers if a.status_code == 401)
    assert sorted(cluster.forwarded_users(upstream, before)) == ["new"] * 4 + ["seen"] * 2
    for kong in kongs:  # the stall was met (a timeout), not skipped
        assert [w for w in cluster.redis_warnings(kong) if "TimeoutError" in w], kong.server_output
        assert C.server_errors(kong) == []


def blocked_writes(client: redis.Redis) -> int:
    """Connections whose SET waits on a ``CLIENT PAUSE WRITE``."""
    return sum(1 for c in client.client_list() if c.get("cmd") == "set" and "b" in c.get("flags", ""))


def test_a_request_stuck_on_redis_does_not_hold_up_other_requests_on_its_node(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer
) -> None:
    """gevent mode: the Redis client yields to the other requests of the plugin server. ``CLIENT
    PAUSE WRITE`` holds the node's lock (``SET NX``) of a new token while reads go on, so the test
    sees the request waiting there (``CLIENT LIST``); a request with a token in the node's local
    cache is answered before the pause is lifted."""
    (kong,) = cluster.nodes(
        start_kong, cluster.with_redis(introspection_config(authz), redis_db.port, timeout_ms=10_000), count=1
    )
    seen, new = authz.issue_opaque({"sub": "seen"}), authz.issue_opaque({"sub": "stuck"})
    assert C.call(kong, seen).status_code == 200
    inspect = redis_db.client()
    events: list[str] = []

    def call(token: str, name: str) -> int:
        status = C.call(kong, token).status_code
        events.append(name)
        return status

    inspect.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(call, new, "stuck")
            assert C.wait_until(lambda: blocked_writes(inspect) == 1, timeout=10)
            cached = pool.submit(call, seen, "cached")
            concurrent.futures.wait([cached], timeout=5)  # half the stuck request's read_timeout
            events.append("unpaused")
            inspect.execute_command("CLIENT", "UNPAUSE")
            assert (stuck.result(), cached.result()) == (200, 200)
    finally:
        inspect.execute_command("CLIENT", "UNPAUSE")
    assert events == ["cached", "unpaused", "stuck"]
    assert cluster.calls_for(authz, "introspection", new) == 1
    assert cluster.redis_warnings(kong) == []  # it waited for Redis, within read_timeout: no failure


# ------------------------------------------------------------------------------------- broken Redis
def resp_command(buffer: bytes) -> tuple[list[bytes], bytes] | None:
    """The first whole RESP command (an array of bulk strings) in ``buffer`` and what follows it."""
    lines = buffer.split(b"\r\n", 1)
    if len(lines) < 2 or not lines[0].startswith(b"*"):
        return None
    rest, words = lines[1], []
    for _ in range(int(lines[0][1:])):
        head = rest.split(b"\r\n", 1)
        if len(head) < 2:
            return None
        size = int(head[0][1:])
        if len(head[1]) < size + 2:
            return None
        words.append(head[1][:size])
        rest = head[1][size + 2 :]
    return words, rest


class BrokenRedis:
    """A TCP server on loopback in place of Redis. It reads RESP commands as Redis does, answers
    redis-py's connection handshake as Redis 7 does (the plugin speaks RESP2, as Kong's connector:
    ``CLIENT``, ``AUTH``, ``SELECT`` and ``PING`` with ``+OK``; a ``HELLO 3`` with a map) and every other command with a reply of the wrong kind: ``ok`` (``+OK``, to GET as
    well), ``integer`` (``:42``), ``array`` (a two-element array), ``random`` (random bytes),
    ``cut`` (the start of a bulk string, then the connection closed) or ``held`` (no entry, the lock
    held by another node, then an integer to the node's poll for the entry). ``commands``: the
    names of the commands it answered that way."""

    REPLIES: dict[str, bytes | dict[bytes, bytes]] = {
        "ok": b"+OK\r\n",
        "integer": b":42\r\n",
        "array": b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
        "random": random.Random(13).randbytes(512),
        "cut": b"$64\r\nab",
        "held": {b"GET": b"$-1\r\n", b"SET": b"$-1\r\n", b"MGET": b":42\r\n"},  # RESP2 nulls
    }
    HANDSHAKE = {b"CLIENT", b"AUTH", b"SELECT", b"PING"}
    HELLO = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"

    def __init__(self, mode: str) -> None:
        self.reply = self.REPLIES[mode]
        self.close_after = mode == "cut"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commands: list[str] = []
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        buffer = b""
        with connection:
            try:
                while data := connection.recv(65536):
                    buffer += data
                    while (parsed := resp_command(buffer)) is not None:
                        words, buffer = parsed
                        if words[0].upper() in self.HANDSHAKE | {b"HELLO"}:
                            connection.sendall(self.HELLO if words[0].upper() == b"HELLO" else b"+OK\r\n")
                            continue
                        name = words[0].upper()
                        self.commands.append(name.decode())
                        connection.sendall(self.reply if isinstance(self.reply, bytes) else self.reply[name])
                        if self.close_after:
                            return
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.mark.parametrize("mode", list(BrokenRedis.REPLIES))
def test_a_redis_answering_garbage_is_never_an_answer(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream, mode: str
) -> None:
    fake = BrokenRedis(mode)
    try:
        (kong,) = cluster.nodes(start_kong, cluster.with_redis(introspection_config(authz), fake.port), count=1)
        one, two = authz.issue_opaque({"sub": "one"}), authz.issue_opaque({"sub": "two"})
        revoked = authz.issue_opaque({"sub": "revoked"})
        authz.revoke(revoked)
        sent = [(one, 200), (authz.issue_opaque(active=False), 401), (revoked, 401), (one, 200),
                ("unknown-" + os.urandom(8).hex(), 401), (two, 200)]  # fmt: skip
        before = len(upstream.requests)
        answers = [C.call(kong, token) for token, _ in sent]
    finally:
        fake.close()
    assert [a.status_code for a in answers] == [status for _, status in sent], [a.text for a in answers]
    assert all(INACTIVE in a.text for a in answers if a.status_code == 401)
    assert cluster.forwarded_users(upstream, before) == ["one", "one", "two"]
    assert fake.commands[:1] == ["GET"]  # the node did ask it
    assert C.server_errors(kong) == []
    # "+OK" to a GET is a value that does not open (a miss) and to the rest what Redis says: no
    # failure. The others fail the GET (or, with the lock held elsewhere, the poll): Redis skipped.
    failed = {"ok": [], "held": ["wait"]}.get(mode, ["get"])
    assert [w.split(cluster.WARNING)[1].split(" ")[0] for w in cluster.redis_warnings(kong)] == failed


# ------------------------------------------------------------------------------------- a delayed node
class DelayingProxy:
    """A TCP proxy from one node to the real Redis that, once told :meth:`hold` ``name``, keeps the
    node's next command of that name (set: :attr:`holding`) until :meth:`release`: a network delay
    or a node descheduled between two of its Redis commands."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: bytes | None = None
        self.holding, self.released = threading.Event(), threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self, name: str) -> None:
        self.held = name.encode()

    def release(self) -> None:
        self.held = None
        self.released.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, server]
            threading.Thread(target=self._commands, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client), daemon=True).start()

    def _commands(self, client: socket.socket, server: socket.socket) -> None:
        buffer = b""
        try:
            while data := client.recv(65536):
                buffer += data
                while (parsed := resp_command(buffer)) is not None:
                    words, rest = parsed
                    if self.held is not None and words[0].upper() == self.held:
                        self.holding.set()
                        self.released.wait(30)
                    server.sendall(buffer[: len(buffer) - len(rest)])
                    buffer = rest
        except OSError:
            pass

    @staticmethod
    def _replies(server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.release()
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_a_node_delayed_between_its_miss_and_its_lock_uses_the_answer_stored_meanwhile(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer
) -> None:
    """Node B misses in Redis; before its lock (``SET NX``) arrives, node A misses, locks, asks the
    authorization server, stores the answer and unlocks. B then gets the lock, and must find A's
    answer rather than ask again: concurrent first requests make one call across the cluster."""
    proxy = DelayingProxy(redis_db.port)
    try:
        config = introspection_config(authz)
        a = start_kong(C.declarative(cluster.with_redis(config, redis_db.port, timeout_ms=5000)))
        b = start_kong(C.declarative(cluster.with_redis(config, proxy.port, timeout_ms=5000)))
        warm = authz.issue_opaque()
        assert [C.call(kong, warm).status_code for kong in (a, b)] == [200, 200]
        token = authz.issue_opaque({"sub": "raced"})
        proxy.hold("SET")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            late = pool.submit(C.call, b, token)
            assert proxy.holding.wait(10), "node B never tried to lock"
            assert C.call(a, token).status_code == 200
            proxy.release()
            assert late.result().status_code == 200
    finally:
        proxy.close()
    assert cluster.calls_for(authz, "introspection", token) == 1
    assert cluster.redis_warnings(a) == cluster.redis_warnings(b) == []


# ------------------------------------------------------------------------------------- forged entries
def test_entries_forged_or_moved_in_redis_never_accept_a_revoked_token(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer, upstream: EchoUpstream
) -> None:
    """An attacker with write access to Redis who knows the plugin config (so the Redis key of any
    token it holds) plants values for revoked tokens: random bytes, plaintext claiming the token
    active (with and without the format byte), and another token's genuine entry."""
    kongs = cluster.nodes(start_kong, cluster.with_redis(introspection_config(authz), redis_db.port))
    context = config_context(parse_config(json.loads(kongs[0].config.decl.plugins[0].config_json)))

    def key(token: str) -> str:
        return derive("introspection", context, [token]).key

    genuine = authz.issue_opaque({"sub": "genuine"})
    assert C.call(kongs[0], genuine).status_code == 200
    entry = redis_db.client().get(key(genuine))
    assert entry is not None, "the attacker's key derivation is not the plugin's"
    now = time.time()
    claims = {"active": True, "sub": "forged", "iss": authz.issuer, "aud": C.RESOURCE, "scope": "mcp:tools",
              "exp": int(now) + 600, "iat": int(now), "client_id": "mcp-client", "token_type": "Bearer"}  # fmt: skip
    plaintext = json.dumps({"until": now + 600, "value": claims}).encode()
    plants = [os.urandom(200), b"\x01" + os.urandom(200), json.dumps(claims).encode(), plaintext, b"\x01" + plaintext,
              entry]  # fmt: skip
    client = redis_db.client()
    revoked = []
    for value in plants:
        token = authz.issue_opaque({"sub": "revoked"})
        authz.revoke(token)
        client.set(key(token), value, px=600_000)
        revoked.append(token)
    before = len(upstream.requests)
    answers = [C.call(kong, token) for token in revoked for kong in kongs]
    assert [a.status_code for a in answers] == [401] * len(answers), [a.text for a in answers]
    assert all(INACTIVE in a.text for a in answers)
    assert cluster.forwarded_users(upstream, before) == []
    assert sum(cluster.calls_for(authz, "introspection", token) for token in revoked) == len(answers)


# ------------------------------------------------------------------------------------- wrong password
def test_a_wrong_redis_password_works_as_without_redis_and_is_never_logged(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    right, wrong = "right-horse-battery-R7x", "wrong-staple-pass-W9q"
    with RedisServer(password=right) as server:
        config = cluster.with_redis(introspection_config(authz), server.port, password=wrong)
        kongs = cluster.nodes(start_kong, config)
        token, inactive = authz.issue_opaque({"sub": "user"}), authz.issue_opaque(active=False)
        before = len(upstream.requests)
        assert cluster.burst(kongs, token, 5) == [200] * 10
        assert [C.call(kong, inactive).status_code for kong in kongs] == [401, 401]
        assert cluster.forwarded_users(upstream, before) == ["user"] * 10
        assert cluster.calls_for(authz, "introspection", token) == 2  # one per node, as without Redis
        assert server.client().dbsize() == 0
    for kong in kongs:
        warnings = cluster.redis_warnings(kong)
        assert len(warnings) == 1 and "AuthenticationError" in warnings[0], kong.server_output
        output = "\n".join(kong.server_output + [message for _, message in kong.error_log])
        assert right not in output and wrong not in output
        assert C.server_errors(kong) == []


# ------------------------------------------------------------------------------------- soak
WARM_UP = 300
TOKENS = 2000


def accepted(tokens: list[str]) -> list[tuple[str, str, dict[str, str], int]]:
    """Requests for test_soak's driver: each token once, each to be accepted."""
    return [("POST", "/mcp", C.bearer(token), 200) for token in tokens]


def test_thousands_of_tokens_through_redis_leave_memory_bounded_and_every_key_expiring(
    start_kong: C.StartKong, authz: MockAuthorizationServer, redis_db: RedisServer
) -> None:
    (kong,) = cluster.nodes(start_kong, cluster.with_redis(introspection_config(authz), redis_db.port), count=1)
    pid = C.server_pid(kong)
    assert run(kong, accepted([authz.issue_opaque() for _ in range(WARM_UP)])) == []
    rss_before, fds_before = C.rss_kib(pid), socket_fds(pid)

    assert run(kong, accepted([authz.issue_opaque() for _ in range(TOKENS)])) == []
    growth = C.rss_kib(pid) - rss_before
    assert growth < RSS_GROWTH_KIB, f"RSS grew {growth} KiB over {TOKENS} tokens"
    assert socket_fds(pid) <= fds_before + 2, (socket_fds(pid), fds_before)
    assert held(kong) == {"events": 0, "handlers": 0, "closing": 0, "instances": 1}
    assert authz.count("introspection") == WARM_UP + TOKENS

    client = redis_db.client()
    keys = list(client.scan_iter(count=1000))
    assert len(keys) == WARM_UP + TOKENS
    assert all(key.startswith(KEY_PREFIX.encode()) and not key.endswith(b":lock") for key in keys)
    pipeline = client.pipeline(transaction=False)
    for key in keys:
        pipeline.pttl(key)
    ttls = pipeline.execute()
    assert all(0 < ttl <= 300_000 for ttl in ttls), sorted(ttls)[:5]  # the tokens' exp: 300 s after issue
    assert C.server_errors(kong) == []
