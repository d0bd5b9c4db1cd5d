"""Kong nodes sharing the cluster cache (behaviour §13) in the end-to-end and fault tests: the
plugin config that points them at one Redis, nodes that each run their own plugin server, a burst
of requests started together, and what the authorization server and the echo upstream saw.

Built on ``tests/harness/stack.py``; the Redis is ``tests/harness/redis_server.py``'s (or any
address, such as a fake server).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tests.harness import stack as C
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.upstream import EchoUpstream

T = TypeVar("T")

SHORT_MS = 300  # Redis timeouts of the fault tests: a stalled Redis costs a request this much at most
WARNING = "cluster cache: "  # how the plugin's rate-limited line about a Redis failure starts


def with_redis(config: dict[str, Any], port: int, timeout_ms: int = SHORT_MS, **record: Any) -> dict[str, Any]:
    """``config`` with ``cluster_cache_strategy: redis`` on ``127.0.0.1:port``, every Redis timeout
    ``timeout_ms``; ``record`` adds or replaces fields of ``cluster_cache_redis``."""
    redis = {"host": "127.0.0.1", "port": port, "connect_timeout": timeout_ms, "send_timeout": timeout_ms,
             "read_timeout": timeout_ms, **record}  # fmt: skip
    return {**config, "cluster_cache_strategy": "redis", "cluster_cache_redis": redis}


def nodes(start_kong: C.StartKong, config: dict[str, Any], count: int = 2, **kwargs: Any) -> list[KongStandIn]:
    """``count`` Kong nodes with the same plugin config, each with its own plugin server process."""
    kongs = [start_kong(C.declarative(config), **kwargs) for _ in range(count)]
    assert len({C.server_pid(kong) for kong in kongs}) == count, "the nodes share a plugin server"
    return kongs


def together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Runs every call in a thread of its own, all released at once; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def burst(kongs: Sequence[KongStandIn], token: str, each: int, headers: dict[str, str] | None = None) -> list[int]:
    """``each`` requests with ``token`` on every node, all started together: their statuses."""

    def on(kong: KongStandIn) -> Callable[[], int]:
        return lambda: C.call(kong, token, headers).status_code

    return together([on(kong) for kong in kongs for _ in range(each)])


def calls_for(authz: MockAuthorizationServer, endpoint: str, token: str) -> int:
    """How many times ``token`` was sent to ``endpoint`` ("introspection": as ``token``; "token":
    as the exchange's ``subject_token``)."""
    field = "token" if endpoint == "introspection" else "subject_token"
    return sum(1 for r in authz.requests if r.endpoint == endpoint and r.form.get(field) == [token])


def forwarded_users(upstream: EchoUpstream, before: int, header: str = "x-user") -> list[str]:
    """The ``header`` (the plugin's ``claim_to_header`` of ``sub``) of every request the upstream
    received since it had ``before``; "" for one without it."""
    return [(r["headers"].get(header) or [""])[0] for r in upstream.requests[before:]]


def redis_warnings(kong: KongStandIn) -> list[str]:
    """The plugin server's log lines about a Redis failure."""
    return [line for line in kong.server_output if WARNING in line and " failed on " in line]
