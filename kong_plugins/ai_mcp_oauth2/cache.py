"""The cache plumbing of validated tokens, exchanged tokens, issuer metadata and key sets.

- :class:`ExpiringCache`: at most :data:`MAX_ENTRIES` entries, each kept until the time it was
  stored with (behaviour §11.2, §9.5), the least recently used going first when it is full. Its lock
  makes every read and write whole, in thread and gevent mode alike.
- :class:`SingleFlight`: concurrent calls with the same key share one execution (behaviour §7.6);
  a request waits for the shared call at most until its time budget ends (a 503).
- :class:`FailureBackoff`: a failed fetch is remembered for :data:`FAILURE_BACKOFF` seconds, so
  that a server that is down is not asked again on every request meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from cachetools import TLRUCache

from . import metrics
from .budget import remaining
from .errors import Unavailable

MAX_ENTRIES = 10_000
FAILURE_BACKOFF = 5.0  # seconds

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


def _until(_key: Any, entry: tuple[Any, float], _now: float) -> float:
    return entry[1]


class ExpiringCache(Generic[K, V]):
    """A bounded map whose entries expire at the time each was stored with."""

    def __init__(self, clock: Callable[[], float], max_entries: int = MAX_ENTRIES, name: str = "other") -> None:
        self.name = name  # the ``cache`` label of its lookups (behaviour §11.5)
        self.lock = threading.Lock()
        self._entries: TLRUCache[K, tuple[V, float]] = TLRUCache(max_entries, ttu=_until, timer=clock)

    def get(self, key: K) -> V | None:
        """The value stored under ``key``, or None when there is none or it has expired."""
        with self.lock:
            entry = self._entries.get(key)
        metrics.sink.lookup(self.name, "local", "miss" if entry is None else "hit")
        return entry[0] if entry is not None else None

    def put(self, key: K, value: V, until: float) -> None:
        """Keep ``value`` under ``key`` until ``until`` (a value already expired is not kept)."""
        with self.lock:
            self._entries[key] = (value, until)

    def __len__(self) -> int:
        with self.lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        """The keys held (a copy)."""
        with self.lock:
            return iter(list(self._entries))


class _Call:
    __slots__ = ("event", "result", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """Concurrent calls with the same key share one execution (behaviour §7.6)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[object, _Call] = {}

    def do(self, key: object, fn: Callable[[], T]) -> T:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if leader:
            try:
                call.result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                call.error = exc
            finally:
                with self._lock:
                    del self._calls[key]
                call.event.set()
        elif not call.event.wait(remaining()):
            raise Unavailable("Timed out waiting for the authorization server")
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[no-any-return]


class FailureBackoff:
    """When each key last failed, and whether that is recent enough not to ask again yet."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._failed_at: dict[Hashable, float] = {}

    def failed(self, key: Hashable) -> None:
        """Remember that fetching ``key`` failed now."""
        self._failed_at[key] = self.clock()

    def forget(self, key: Hashable) -> None:
        """A fetch of ``key`` succeeded: its earlier failure no longer holds anything back."""
        self._failed_at.pop(key, None)

    def backing_off(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` failed less than :data:`FAILURE_BACKOFF` seconds before ``now``."""
        return now - self._failed_at.get(key, float("-inf")) < FAILURE_BACKOFF
