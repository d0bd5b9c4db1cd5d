"""Prometheus metrics (behaviour §11.5), off unless the start command has ``--metrics-address``.

The plugin records through :data:`sink`, an object with four methods (:class:`NoMetrics`):

- ``request(decision, status, reason)`` for a request let through or a metadata answer, and
  ``refused(refusal)`` for a refusal (its reason is worked out only when metrics are on): one per
  decision, from the gateway's exit points;
- ``call(kind, outcome, seconds)``: one per outbound call to the authorization server;
- ``lookup(cache, layer, outcome)``: one per cache lookup;
- ``redis_error(operation)``: one per failed operation on the cluster cache's Redis.

By default :data:`sink` is :data:`NOOP`, whose methods do nothing (no label lookup, no lock, no
clock read), so a plugin server without metrics pays one empty method call per hook. The start
command :func:`install`\\ s a :class:`PrometheusMetrics` and :func:`serve`\\ s ``/metrics`` with
``prometheus_client``'s own HTTP server (a thread, a greenlet once gevent has patched threads).

Labels never carry request data: a request's ``reason`` comes from its :class:`~.errors.Refusal`
class and from a fixed table of the plugin's own descriptions (:func:`refusal_reason`); kinds,
outcomes, caches and layers are the plugin's constants.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .errors import Refusal

PREFIX = "ai_mcp_oauth2_"
KINDS = ("discovery", "jwks", "introspection", "exchange")
OUTCOMES = ("ok", "error_status", "failed", "malformed")
CACHES = ("tokens", "exchange", "discovery", "jwks")
SHARED_CACHES = ("tokens", "exchange")  # the caches the cluster cache backs
LAYERS = ("local", "redis")  # redis: the cluster cache (introspection results and exchanged tokens only)
LOOKUP_OUTCOMES = ("hit", "miss", "invalid")  # invalid: a Redis entry that does not decrypt (a miss)
REDIS_OPERATIONS = ("connect", "get", "lock", "wait", "put", "unlock", "claim")
# seconds: a local authorization server answers in milliseconds, a stalled one at the request budget (45 s)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class NoMetrics:
    """Metrics off: every hook is an empty method."""

    __slots__ = ()
    enabled = False

    def request(self, decision: str, status: int, reason: str) -> None:
        pass

    def refused(self, refusal: Refusal) -> None:
        pass

    def call(self, kind: str, outcome: str, seconds: float) -> None:
        pass

    def lookup(self, cache: str, layer: str, outcome: str) -> None:
        pass

    def redis_error(self, operation: str) -> None:
        pass


class PrometheusMetrics(NoMetrics):
    """The metric families, in ``registry`` (a fresh one by default: tests create several)."""

    __slots__ = ("registry", "requests", "calls", "latency", "lookups", "redis_errors")
    enabled = True

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            PREFIX + "requests",
            "Requests decided by the plugin, by decision (accepted, metadata, refused), status and reason",
            ("decision", "status", "reason"),
            registry=self.registry,
        )
        self.calls = Counter(
            PREFIX + "authorization_server_calls",
            "Calls to the authorization server by kind and outcome (ok, error_status, failed, malformed)",
            ("kind", "outcome"),
            registry=self.registry,
        )
        self.latency = Histogram(
            PREFIX + "authorization_server_call_duration_seconds",
            "Duration of calls to the authorization server by kind, whatever their outcome",
            ("kind",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lookups = Counter(
            PREFIX + "cache_lookups",
            "Cache lookups by cache, layer (local, redis) and outcome (hit, miss, invalid)",
            ("cache", "layer", "outcome"),
            registry=self.registry,
        )
        self.redis_errors = Counter(
            PREFIX + "redis_errors",
            "Failed operations on the cluster cache's Redis, by operation; each skips Redis for a few seconds",
            ("operation",),
            registry=self.registry,
        )
        for kind in KINDS:  # every series from the start, so that rates begin at zero
            self.latency.labels(kind)
            for outcome in OUTCOMES:
                self.calls.labels(kind, outcome)
        for cache in CACHES:
            for outcome in ("hit", "miss"):
                self.lookups.labels(cache, "local", outcome)
        for cache in SHARED_CACHES:
            for outcome in LOOKUP_OUTCOMES:
                self.lookups.labels(cache, "redis", outcome)
        for operation in REDIS_OPERATIONS:
            self.redis_errors.labels(operation)

    def request(self, decision: str, status: int, reason: str) -> None:
        self.requests.labels(decision, str(status), reason).inc()

    def refused(self, refusal: Refusal) -> None:
        self.request("refused", refusal.status, refusal_reason(refusal))

    def call(self, kind: str, outcome: str, seconds: float) -> None:
        self.calls.labels(kind, outcome).inc()
        self.latency.labels(kind).observe(seconds)

    def lookup(self, cache: str, layer: str, outcome: str) -> None:
        self.lookups.labels(cache, layer, outcome).inc()

    def redis_error(self, operation: str) -> None:
        self.redis_errors.labels(operation).inc()


NOOP = NoMetrics()
sink: NoMetrics = NOOP


def install(metrics: NoMetrics) -> None:
    """Make ``metrics`` the sink every hook records to (the start command; tests)."""
    global sink
    sink = metrics


# The 401 and 503 causes: the plugin's own descriptions (never request data), by a word they contain.
_CAUSES: dict[type[Refusal], tuple[tuple[str, str], ...]] = {
    errors.InvalidToken: (
        ("expired", "expired"),
        ("not active", "inactive"),
        ("does not accept", "inactive"),
        ("exchanged", "exchange_refused"),
        ("signature", "signature"),
        ("signing key", "signature"),
        ("trusted authorization server", "issuer"),
        ("not intended", "audience"),
        ("malformed", "malformed"),
        ("not a JWT", "malformed"),
    ),
    errors.Unavailable: (
        ("Timed out", "timeout"),
        ("in time", "timeout"),
        ("overloaded", "overloaded"),
        ("lost track", "lost_event"),
        ("metadata", "discovery"),
        ("keys", "jwks"),
        ("exchange", "exchange"),
        ("introspect", "introspection"),
        ("authorization server", "introspection"),
    ),
}
_REASONS: tuple[tuple[type[Refusal], str], ...] = (
    (errors.MissingToken, "missing_token"),
    (errors.InvalidDpopProof, "invalid_dpop_proof"),
    (errors.UseDpopNonce, "use_dpop_nonce"),
    (errors.InvalidToken, "invalid_token"),
    (errors.InsufficientScope, "insufficient_scope"),
    (errors.Forbidden, "access_denied"),
    (errors.InvalidRequest, "invalid_request"),
    (errors.PayloadTooLarge, "request_too_large"),
    (errors.LengthRequired, "length_required"),
    (errors.MethodNotAllowed, "method_not_allowed"),
    (errors.Unavailable, "unavailable"),
    (errors.Misconfigured, "misconfigured"),
    (errors.InternalError, "internal"),
)


def refusal_reason(refusal: Refusal) -> str:
    """A refusal's ``reason`` label: its class, refined for 401 and 503 by its cause; for a class
    not listed, the error code its class declares."""
    for cls, name in _REASONS:
        if isinstance(refusal, cls):
            for word, cause in _CAUSES.get(cls, ()):
                if word in refusal.description:
                    return cause
            return name
    return type(refusal).error  # a class constant (the JSON-RPC 400s: invalid_request)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a bind address; ValueError if it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics-address takes HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def serve(address: str, metrics: PrometheusMetrics) -> Any:
    """Serve ``metrics`` at ``http://address/metrics`` in the background; raises ValueError for an
    unusable address and OSError when it cannot be bound. Returns the server (``server_address``)."""
    from prometheus_client import start_http_server

    host, port = parse_address(address)
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server
