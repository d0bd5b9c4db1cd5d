"""The cluster cache (behaviour §13): introspection results and exchanged tokens shared through Redis
by every Kong node that runs the plugin with the same configuration (``cluster_cache_strategy: redis``).

Where it sits. Each node keeps its local cache in front (``cache.ExpiringCache``): a token seen on
this node costs no Redis call. On a local miss the node asks Redis once (concurrent requests share
that lookup through the local single flight); only on a Redis miss does it call the authorization
server, and then it stores the answer for the other nodes.

Nothing readable is stored. For one answer, :func:`derive` takes the secret inputs (the subject
token; for an exchange also the actor token) and a context (the kind of answer and a digest of the
plugin's configuration, which holds the endpoint, the client and every request parameter) and
derives with HKDF (RFC 5869) two independent values under distinct labels: the Redis key's name and
an AES-256-GCM key. The value is ``{"until", "value"}`` sealed under that key with a random nonce
(NIST SP 800-38D), the Redis key as associated data. A dump of Redis therefore yields neither claims
nor tokens without the original tokens, and an entry written or moved by anyone who lacks them —
another token's entry, another configuration's, random bytes, plaintext — fails to open and counts
as a miss (``invalid``), never as an answer.

One authorization-server call per token across the cluster. After a miss a node takes a short lock
(``SET NX PX``, Redis's single-instance lock pattern) next to the entry, in the same hash slot, and
looks for the entry once more (another node may have stored it and unlocked since the miss); a
node that finds the lock taken polls for the entry at most ``timeout`` (and at most half of what
is left of the request budget), then calls the authorization server itself.

Redis is an optimisation, never a dependency. Every operation is bounded, whole, by the record's
timeouts and by half of what is left of the request's budget (:meth:`ClusterCache._call`; redis-py's
timeouts bound each read, which a reply dripped a byte at a time never ends), redis-py's retries are
turned off, and any failure — an exception, a reply of the wrong shape — makes
the node skip Redis for :data:`BACKOFF` seconds and carry on as without it (a rate-limited log
line names the operation and the error class, never a password). Only accepted answers are shared:
inactive tokens and refused exchanges never are; an entry expires in Redis when its answer does.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import __version__, budget, metrics
from .schema import ClusterCacheRedis, Config

log = logging.getLogger("ai_mcp_oauth2")

T = TypeVar("T")

KEY_PREFIX = "ai-mcp-oauth2:"  # every key the plugin writes starts with it (behaviour §13.6)
BACKOFF = 5.0  # seconds Redis is skipped after a failed operation
LOG_EVERY = 60.0  # seconds between two log lines about Redis failing
POLL_FIRST = 0.01  # seconds before the first look at an entry another node is loading; doubles up to
POLL_MAX = 0.2
MAX_VALUE = 1 << 20  # bytes: a larger Redis value is not read as an entry
MAX_REPLY = 2 * MAX_VALUE  # bytes one Redis operation reads at most (a larger reply is a failure)
NONCE = 12  # bytes, AES-GCM's recommended nonce length
FORMAT = b"\x01"  # the sealed value's format, first byte
_NAME_LABEL = b"ai-mcp-oauth2/cluster-cache/v1/redis-key"
_SEAL_LABEL = b"ai-mcp-oauth2/cluster-cache/v1/aes-256-gcm-key"
# Redis's documented single-instance unlock: delete the lock only if it is still this node's.
_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_NOT_CONTEXT = frozenset({"cluster_cache_redis", "cluster_cache_items"})  # where Redis is, not what it holds


def shared_items(config: Config) -> frozenset[str]:
    """What an instance shares (behaviour §13.1): with ``cluster_cache_strategy: redis``, each item of
    ``cluster_cache_items`` whose answers the instance asks for and caches locally — introspection
    results with ``introspection_endpoint`` and ``cache_introspection``, exchanged tokens with
    ``token_exchange.enabled`` and ``token_exchange.cache.enabled``."""
    if config.cluster_cache_strategy != "redis":
        return frozenset()
    exchange = config.token_exchange
    used = {
        "introspection": config.introspection_endpoint is not None and config.cache_introspection,
        "token_exchange": exchange.enabled and exchange.cache.enabled,
    }
    shared = {item for item in config.cluster_cache_items if used[item]}
    if config.proof_of_possession_dpop != "off":
        shared.add("dpop_jti")  # the DPoP replay cache is shared whenever there is a cluster cache (§14.3)
    return frozenset(shared)


_LOCAL_CACHE = {"introspection": "tokens", "token_exchange": "exchange"}  # the metrics name each kind backs


class RedisFailure(Exception):
    """Redis did not do what was asked, or answered in a shape it never should."""


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one answer lives in Redis and the key that seals it."""

    kind: str  # "introspection" or "token_exchange" (the cluster_cache_items name)
    key: str
    lock: str
    aead: AESGCM


def config_context(config: Config) -> bytes:
    """A digest of everything in the configuration that can change an answer: every field but the
    ones saying where Redis is (Kong's per-node fields such as ``__seq__`` are not in :class:`Config`),
    and the plugin's version, whose checks may differ (a node re-checks a shared answer only for time)."""
    fields = {name: value for name, value in dataclasses.asdict(config).items() if name not in _NOT_CONTEXT}
    fields["__version__"] = __version__
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()


def derive(kind: str, context: bytes, secrets: Sequence[str]) -> Slot:
    """The slot of the answer of ``kind`` for ``secrets`` under ``context`` (RFC 5869 HKDF-SHA256:
    the secrets as input keying material, the context as salt, one label per derived value)."""
    material = b"".join(len(b).to_bytes(4, "big") + b for b in (s.encode() for s in secrets))
    salt = hashlib.sha256(kind.encode() + b"\x00" + context).digest()
    name = HKDF(hashes.SHA256(), 32, salt, _NAME_LABEL).derive(material)
    seal = HKDF(hashes.SHA256(), 32, salt, _SEAL_LABEL).derive(material)
    tag = base64.urlsafe_b64encode(name).rstrip(b"=").decode()
    key = f"{KEY_PREFIX}{kind}:{{{tag}}}"  # the braces: entry and lock share a Redis Cluster hash slot
    return Slot(kind, key, key + ":lock", AESGCM(seal))


def seal(slot: Slot, value: Any, until: float) -> bytes:
    """``value`` and the time it holds until, sealed for ``slot``."""
    nonce = os.urandom(NONCE)
    plain = json.dumps({"until": until, "value": value}, separators=(",", ":")).encode()
    return FORMAT + nonce + slot.aead.encrypt(nonce, plain, slot.key.encode())


def unseal(slot: Slot, data: bytes) -> tuple[Any, float] | None:
    """``(value, until)`` from what :func:`seal` made for ``slot``; None for anything else."""
    if len(data) < 1 + NONCE + 16 or len(data) > MAX_VALUE or data[:1] != FORMAT:
        return None
    try:
        plain = slot.aead.decrypt(data[1 : 1 + NONCE], data[1 + NONCE :], slot.key.encode())
        entry = json.loads(plain)
    except (InvalidTag, ValueError):
        return None
    until = entry.get("until") if isinstance(entry, dict) else None
    if not isinstance(until, (int, float)) or isinstance(until, bool) or "value" not in entry:
        return None
    return entry["value"], float(until)


_operation = threading.local()  # the Redis operation this thread (greenlet) runs: deadline, bytes read


def _left() -> float | None:
    """Seconds left to the current Redis operation (raises when none are), None outside one."""
    deadline: float | None = getattr(_operation, "deadline", None)
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the Redis operation's time is up")
    return left


def _received(size: int) -> int:
    """Count ``size`` bytes read for the current operation: anyone who can write to Redis can make an
    entry or a lock 512 MB without any token, and a reply is read whole before its length is seen."""
    if getattr(_operation, "deadline", None) is not None:
        _operation.read += size
        if _operation.read > MAX_REPLY:
            raise OSError("the Redis reply is larger than the cluster cache reads")
    return size


class _DeadlineSocket:
    """A Redis connection's socket whose every read and write waits at most what is left of the
    current operation: redis-py's timeouts bound each read, and a reply dripped a byte at a time
    would never let one expire. An operation reads at most :data:`MAX_REPLY` bytes."""

    __slots__ = ("sock", "timeout")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.timeout: float | None = sock.gettimeout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self.timeout

    def _bound(self) -> None:
        left = _left()
        self.sock.settimeout(self.timeout if left is None or self.timeout == 0 else min(self.timeout or left, left))

    def recv(self, *args: Any) -> Any:
        self._bound()
        data = self.sock.recv(*args)
        _received(len(data))
        return data

    def recv_into(self, *args: Any) -> Any:
        self._bound()
        return _received(self.sock.recv_into(*args))

    def sendall(self, *args: Any) -> Any:
        self._bound()
        return self.sock.sendall(*args)


class _Bounded:
    """Mixed into redis-py's connection classes: connecting waits at most what is left of the current
    operation, and the socket keeps to it (:class:`_DeadlineSocket`)."""

    socket_connect_timeout: float | None

    def _connect(self) -> Any:
        configured = self.socket_connect_timeout
        left = _left()
        if left is not None:
            self.socket_connect_timeout = left if configured is None else min(configured, left)
        try:
            return _DeadlineSocket(super()._connect())  # type: ignore[misc]
        finally:
            self.socket_connect_timeout = configured


@functools.cache
def _bounded(base: type) -> type:
    """``base``, a redis-py connection class, keeping to the current operation's deadline."""
    return type(f"Bounded{base.__name__}", (_Bounded, base), {})


def _seconds(milliseconds: int) -> float:
    """A Redis timeout in seconds. Kong's 0 leaves the socket to nginx's 60 s default; here every
    timeout is also capped at a quarter of the request budget, so Redis cannot use up a request's time."""
    return min((milliseconds or 60_000) / 1000, budget.REQUEST_BUDGET / 4)


def connect(settings: ClusterCacheRedis) -> Any:
    """A redis-py client for ``settings``: Redis Cluster with ``cluster_nodes``, Sentinel with
    ``sentinel_master``, else one server; no retries (redis-py retries by default); connections
    kept up to ``keepalive_pool_size``, each keeping to the deadline of the operation it serves
    (:class:`_Bounded`). Creating it makes no connection, but for Redis Cluster's, which reads the
    cluster's slots."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "socket_connect_timeout": _seconds(settings.connect_timeout),
        "socket_timeout": _seconds(max(settings.send_timeout, settings.read_timeout)),
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "protocol": 2,  # RESP2, as Kong's connector speaks: no HELLO for older servers and proxies
    }
    if settings.ssl:
        options.update(
            ssl_cert_reqs="required" if settings.ssl_verify else "none", ssl_check_hostname=settings.ssl_verify
        )
    connection = _bounded(redis.SSLConnection if settings.ssl else redis.Connection)
    if settings.cluster_nodes:
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(node.ip, node.port) for node in settings.cluster_nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(
            startup_nodes=nodes,
            ssl=settings.ssl,
            max_connections=settings.keepalive_pool_size,
            connection_class=connection,
            **options,
        )
    if settings.sentinel_master:
        from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

        # the sentinels' clients: the same timeouts, no retries, and TLS with ssl (as Kong's connector)
        guard = {k: v for k, v in options.items() if k.startswith(("socket_", "ssl_")) or k == "retry"}
        sentinel = Sentinel(
            [(node.host, node.port) for node in settings.sentinel_nodes],
            sentinel_kwargs={
                **guard,
                "ssl": settings.ssl,
                "username": settings.sentinel_username,
                "password": settings.sentinel_password,
            },
            ssl=settings.ssl,
            **options,
        )
        for client in sentinel.sentinels:  # redis.Redis takes no connection class
            client.connection_pool.connection_class = connection
        managed = SentinelManagedSSLConnection if settings.ssl else SentinelManagedConnection
        return sentinel.master_for(
            settings.sentinel_master,
            db=settings.database,
            connection_class=_bounded(managed),
            max_connections=settings.keepalive_pool_size,
        )
    pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
        max_connections=settings.keepalive_pool_size,
        timeout=_seconds(settings.connect_timeout),
        connection_class=connection,
        host=settings.host,
        port=settings.port,
        db=settings.database,
        **options,
    )
    return redis.Redis.from_pool(pool)  # closing the client closes its pool (an instance replaced by Kong)


def _pool_full(exc: Exception) -> bool:
    """Whether ``exc`` is redis-py refusing a command beyond ``keepalive_pool_size`` at once (Sentinel
    and Redis Cluster pools do not wait for a connection): this node's limit, not Redis failing, so
    the request goes without Redis and Redis is not skipped."""
    from redis.exceptions import MaxConnectionsError

    return isinstance(exc, MaxConnectionsError)


def where(settings: ClusterCacheRedis) -> str:
    """Which Redis, for log lines (never a credential)."""
    if settings.cluster_nodes:
        return "Redis Cluster " + ",".join(f"{n.ip}:{n.port}" for n in settings.cluster_nodes)
    if settings.sentinel_master:
        return f"Redis Sentinel master {settings.sentinel_master}"
    return f"Redis {settings.host}:{settings.port}/{settings.database}"


class ClusterCache:
    """One plugin instance's side of the shared cache: :meth:`through` is the whole protocol."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        client_factory: Callable[[ClusterCacheRedis], Any] = connect,
    ) -> None:
        self.settings = config.cluster_cache_redis
        self.items = shared_items(config)
        self.context = config_context(config)
        self.clock = clock
        self.wait_limit = config.timeout / 1000  # how long a node waits for another node's call
        self.lock_ms = int(2 * config.timeout) + 1000  # the lock outlives the holder's call, not much more
        record = self.settings  # one operation, whole: connecting, then sending and reading
        self.op_limit = _seconds(record.connect_timeout) + _seconds(max(record.send_timeout, record.read_timeout))
        self._factory = client_factory
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._skip_until = 0.0  # monotonic time
        self._logged_at = float("-inf")
        self._where = where(self.settings)

    def shares(self, item: str) -> bool:
        """Whether answers of kind ``item`` go through Redis (:func:`shared_items`)."""
        return item in self.items

    def close(self) -> None:
        """Close the connections (the instance is gone); idempotent."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is None:
            return
        # with Sentinel, the clients of the sentinels themselves too
        manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
        for closing in (client, *getattr(manager, "sentinels", ())):
            try:
                closing.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def slot(self, kind: str, secrets: Sequence[str]) -> Slot:
        return derive(kind, self.context, secrets)

    def through(
        self,
        slot: Slot,
        load: Callable[[], T],
        share: Callable[[T], tuple[Any, float] | None],
        reuse: Callable[[Any, float], T | None],
    ) -> T:
        """The answer for ``slot``: another node's (``reuse(value, until)``, None to ignore it) or
        ``load()``'s, which is stored for the others when ``share`` gives ``(value, until)``.
        Only ``load`` raises."""
        if time.monotonic() < self._skip_until:
            return load()
        try:
            found = self._get(slot)
            if found is not None:
                value = reuse(*found)
                if value is not None:
                    return value
            token = os.urandom(16).hex()
            if self._lock(slot, token):
                # Another node may have stored the answer and released its lock between this
                # node's miss and its lock: look again (the request's lookup is counted already).
                found = self._get(slot, count=False)
                value = reuse(*found) if found is not None else None
                if value is not None:
                    self._unlock(slot, token)
                    return value
            else:
                found = self._wait(slot)
                if found is not None:
                    value = reuse(*found)
                    if value is not None:
                        return value
                token = ""  # another node's lock: never released from here
        except RedisFailure:
            return load()
        try:
            result = load()
        except BaseException:
            self._unlock(slot, token)
            raise
        entry = share(result)
        if entry is not None:
            self._put(slot, *entry)
        self._unlock(slot, token)
        return result

    # ------------------------------------------------------------------ Redis operations
    def _get(self, slot: Slot, count: bool = True) -> tuple[Any, float] | None:
        data = self._call("get", lambda client: client.get(slot.key))
        if data is None:
            if count:
                metrics.sink.lookup(_LOCAL_CACHE[slot.kind], "redis", "miss")
            return None
        return self._open(slot, data, count)

    def _open(self, slot: Slot, data: Any, count: bool = True) -> tuple[Any, float] | None:
        cache = _LOCAL_CACHE[slot.kind]
        if not isinstance(data, bytes):
            self._failed("get", f"a {type(data).__name__} reply")
            raise RedisFailure
        found = unseal(slot, data)
        if found is None or found[1] <= self.clock():
            if count:
                metrics.sink.lookup(cache, "redis", "invalid" if found is None else "miss")
            return None
        if count:
            metrics.sink.lookup(cache, "redis", "hit")
        return found

    def _lock(self, slot: Slot, token: str) -> bool:
        return self._set_once("lock", slot.lock, token, self.lock_ms)

    def _set_once(self, operation: str, key: str, value: str | bytes, milliseconds: int) -> bool:
        """``SET key value NX PX milliseconds``: whether it was set (False: the key exists)."""
        taken = self._call(operation, lambda client: client.set(key, value, nx=True, px=milliseconds))
        if taken not in (True, None):
            self._failed(operation, f"a {type(taken).__name__} reply")
            raise RedisFailure
        return taken is True

    def _wait(self, slot: Slot) -> tuple[Any, float] | None:
        """Poll for the entry another node is loading, until it is there, the lock is gone, or the wait ends."""
        left = budget.remaining()
        limit = self.wait_limit if left is None else min(self.wait_limit, left / 2)
        deadline = time.monotonic() + limit
        pause = POLL_FIRST
        while True:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX)
            reply = self._call("wait", lambda client: client.mget([slot.key, slot.lock]))
            if not isinstance(reply, list) or len(reply) != 2:
                self._failed("wait", f"a {type(reply).__name__} reply")
                raise RedisFailure
            data, held = reply
            if data is not None:
                return self._open(slot, data)
            if held is None or time.monotonic() >= deadline:
                return None

    def claim(self, kind: str, name: str, until: float) -> bool | None:
        """Mark ``name`` (a digest, no secret) of ``kind`` used until ``until`` across the cluster
        (``SET NX PX``): True for its first use, False when a request on any node used it already,
        None when Redis cannot say (skipped or failing: the caller decides alone)."""
        milliseconds = int((until - self.clock()) * 1000)
        if time.monotonic() < self._skip_until or milliseconds <= 0:
            return None
        try:
            return self._set_once("claim", f"{KEY_PREFIX}{kind}:{name}", b"1", milliseconds)
        except RedisFailure:
            return None

    def _put(self, slot: Slot, value: Any, until: float) -> None:
        milliseconds = int((until - self.clock()) * 1000)
        if milliseconds <= 0:
            return
        sealed = seal(slot, value, until)
        try:
            self._call("put", lambda client: client.set(slot.key, sealed, px=milliseconds))
        except RedisFailure:
            pass

    def _unlock(self, slot: Slot, token: str) -> None:
        if not token or time.monotonic() < self._skip_until:
            return
        try:
            self._call("unlock", lambda client: client.eval(_UNLOCK, 1, slot.lock, token))
        except RedisFailure:
            pass

    def _call(self, operation: str, command: Callable[[Any], Any]) -> Any:
        """``command`` on the client, whole within the record's timeouts and half of what is left of
        the request's budget (connecting and every read and write included: :class:`_Bounded`),
        reading at most :data:`MAX_REPLY` bytes."""
        left = budget.remaining()
        _operation.deadline = time.monotonic() + (self.op_limit if left is None else min(self.op_limit, left / 2))
        _operation.read = 0
        try:
            try:
                client = self._connected()
            except RedisFailure:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever Redis or its client does, the request goes on
                self._failed("connect", type(exc).__name__)
                raise RedisFailure from None
            try:
                return command(client)
            except Exception as exc:  # noqa: BLE001
                if not _pool_full(exc):
                    self._failed(operation, type(exc).__name__)
                raise RedisFailure from None
        finally:
            _operation.deadline = None

    def _connected(self) -> Any:
        with self._client_lock:
            if self._client is None:
                # Redis Cluster's client connects as it is built: a request that waited here while
                # another one's attempt failed skips Redis instead of trying again in its turn.
                if time.monotonic() < self._skip_until:
                    raise RedisFailure
                self._client = self._factory(self.settings)
            return self._client

    def _failed(self, operation: str, what: str) -> None:
        now = time.monotonic()
        self._skip_until = now + BACKOFF
        metrics.sink.redis_error(operation)
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning(
                "cluster cache: %s failed on %s (%s); Redis is skipped for %.0f s (logged at most every %.0f s)",
                operation,
                self._where,
                what,
                BACKOFF,
                LOG_EVERY,
            )
