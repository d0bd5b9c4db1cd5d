"""Behaviour §5/§7: the issuer metadata cache at each of its transitions, under concurrent
requests: the first discovery, expiry, a failed discovery with and without metadata held, and
recovery after the failure backoff. Every request is answered from one discovery.

(Discovery's URLs, retries and issuer rule are tested through the JWT validator in
``test_jwt_validator.py``.) A discovery is held in flight by a :class:`Gate` while the others
arrive; ``settle`` waits until each of them has answered or is waiting on it.
"""

from __future__ import annotations

import threading
from typing import Any

from kong_plugins.ai_mcp_oauth2.cache import FAILURE_BACKOFF
from kong_plugins.ai_mcp_oauth2.discovery import Discovery
from kong_plugins.ai_mcp_oauth2.http import HttpResponse

from .fakes import DOWN, ISSUER, Clock, FakeHttp, Gate, in_threads, join, ok, settle

META = "https://as.example.com/.well-known/oauth-authorization-server"
TTL = 600.0
WIDTH = 40
FIRST = {"issuer": ISSUER, "jwks_uri": "https://as.example.com/jwks"}
SECOND = {"issuer": ISSUER, "jwks_uri": "https://as.example.com/jwks-2"}


def discovery(*answers: Any, clock: Clock | None = None) -> tuple[Discovery, FakeHttp, Clock]:
    clock = clock or Clock()
    http = FakeHttp().on(META, *(answers or (ok(FIRST),)))
    # endpoint set: one URL, one attempt, so one discovery is one request to the server
    return Discovery(http, endpoint=META, attempts=1, ttl=TTL, clock=clock), http, clock  # type: ignore[arg-type]


def expired() -> tuple[Discovery, FakeHttp, Clock]:
    """FIRST discovered, and its TTL over: the next request refreshes it."""
    d, http, clock = discovery()
    d.metadata(ISSUER)
    clock.now += TTL
    return d, http, clock


def outcome(result: Any) -> Any:
    return type(result).__name__ if isinstance(result, BaseException) else result


def held(d: Discovery, http: FakeHttp, answer: Any) -> tuple[Gate, list[Any], list[threading.Thread]]:
    gate = Gate(answer)
    http.on(META, gate)
    threads, results = in_threads(1, lambda _: d.metadata(ISSUER))
    assert gate.entered.wait(10)
    return gate, results, threads


def at_once(d: Discovery) -> list[Any]:
    """WIDTH requests at the same time; what each was answered."""
    threads, results = in_threads(WIDTH, lambda _: d.metadata(ISSUER))
    join(threads)
    return [outcome(r) for r in results]


def during_held_discovery(d: Discovery, http: FakeHttp, answer: Any) -> tuple[list[Any], list[Any]]:
    """A leader's discovery is held at the server until WIDTH other requests have arrived (``settle``);
    then it completes with ``answer``. What the leader and each of the others were answered."""
    gate, first, leader = held(d, http, answer)
    threads, results = in_threads(WIDTH, lambda _: d.metadata(ISSUER))
    settle(threads)
    gate.open()
    join(threads + leader)
    return [outcome(r) for r in first], [outcome(r) for r in results]


def test_the_first_requests_share_one_discovery() -> None:
    d, http, _ = discovery()
    first, results = during_held_discovery(d, http, ok(FIRST))
    assert results == [FIRST] * WIDTH and first == [FIRST]
    assert http.count(META) == 1


def test_expired_metadata_is_refreshed_once_for_all_concurrent_requests() -> None:
    d, http, clock = expired()
    first, results = during_held_discovery(d, http, ok(SECOND))
    assert results == [SECOND] * WIDTH and first == [SECOND]
    assert http.count(META) == 2
    clock.now += TTL - 1
    assert d.metadata(ISSUER) == SECOND and http.count(META) == 2


class PausingCache(dict[str, Any]):
    """The metadata cache, holding one chosen thread right after its first look into it."""

    def __init__(self) -> None:
        super().__init__()
        self.target: threading.Thread | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def get(self, key: str, default: Any = None) -> Any:
        value = super().get(key, default)
        if threading.current_thread() is self.target:
            self.target = None
            self.paused.set()
            assert self.resume.wait(10)
        return value


def test_a_request_that_looked_at_expired_metadata_before_the_refresh_completed_does_not_discover_again() -> None:
    d, http, clock = expired()
    cache = PausingCache()
    cache.update(d.cache)
    d.cache = cache
    gate, first, leader = held(d, http, ok(SECOND))
    late, results = in_threads(1, lambda _: d.metadata(ISSUER), start=False)
    cache.target = late[0]
    late[0].start()
    assert cache.paused.wait(10)  # it found the metadata expired
    gate.open()
    join(leader)
    cache.resume.set()
    join(late)
    assert first == results == [SECOND]
    assert http.count(META) == 2


class PausingClock(Clock):
    """Holds the thread whose discovery just failed at its next reading of the clock (where the
    failure is remembered), so that another request can arrive at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: threading.Thread | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def fail(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        if not self.paused.is_set():
            self.failed = threading.current_thread()
        raise DOWN

    def __call__(self) -> float:
        if threading.current_thread() is self.failed:
            self.failed = None
            self.paused.set()
            assert self.resume.wait(10)
        return self.now


def test_a_request_arriving_as_a_discovery_fails_does_not_ask_again_within_the_backoff() -> None:
    """The failure was remembered by each caller after the shared discovery had ended, so a
    request arriving in between started a second discovery of a server known to be down."""
    clock = PausingClock()
    d, http, _ = discovery(clock.fail, clock=clock)
    leader, first = in_threads(1, lambda _: d.metadata(ISSUER))
    assert clock.paused.wait(10)
    late, results = in_threads(1, lambda _: d.metadata(ISSUER))
    settle(late)  # answered, or waiting on the discovery in flight
    clock.resume.set()
    join(leader + late)
    assert [outcome(r) for r in first + results] == ["OutboundCallFailed", "OutboundCallFailed"]
    assert http.count(META) == 1


def test_a_failed_first_discovery_is_503_for_all_and_asks_once_per_backoff_window() -> None:
    d, http, clock = discovery()
    first, results = during_held_discovery(d, http, DOWN)
    assert results == ["OutboundCallFailed"] * WIDTH and first == ["OutboundCallFailed"]
    assert http.count(META) == 1
    clock.now += FAILURE_BACKOFF - 1
    # inside the window: answered at once, nobody asked
    results = at_once(d)
    assert results == ["OutboundCallFailed"] * WIDTH and http.count(META) == 1
    clock.now += 1
    first, results = during_held_discovery(d, http, ok(FIRST))
    assert results == [FIRST] * WIDTH and first == [FIRST]
    assert http.count(META) == 2


def test_a_failed_refresh_serves_the_metadata_held_to_everyone_and_asks_once_per_backoff_window() -> None:
    d, http, clock = expired()
    first, results = during_held_discovery(d, http, ok({}, status=503))
    assert results == [FIRST] * WIDTH and first == [FIRST]
    assert http.count(META) == 2
    clock.now += FAILURE_BACKOFF - 1
    results = at_once(d)
    assert results == [FIRST] * WIDTH and http.count(META) == 2
    clock.now += 1
    http.on(META, ok(SECOND))
    results = at_once(d)
    assert results == [SECOND] * WIDTH and http.count(META) == 3
