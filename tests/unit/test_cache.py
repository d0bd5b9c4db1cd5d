"""Behaviour §7/§11: the bounded expiring cache, the single flight and the failure backoff."""

from __future__ import annotations

import threading

import pytest

from kong_plugins.ai_mcp_oauth2.budget import request_budget
from kong_plugins.ai_mcp_oauth2.cache import FAILURE_BACKOFF, ExpiringCache, FailureBackoff, SingleFlight
from kong_plugins.ai_mcp_oauth2.errors import Unavailable

from .fakes import Clock


def test_an_entry_is_kept_until_its_time_and_not_after() -> None:
    clock = Clock()
    cache: ExpiringCache[str, str] = ExpiringCache(clock)
    cache.put("k", "v", until=clock.now + 10)
    clock.now += 9
    assert cache.get("k") == "v"
    clock.now += 1
    assert cache.get("k") is None


def test_an_entry_already_expired_is_not_kept() -> None:
    clock = Clock()
    cache: ExpiringCache[str, str] = ExpiringCache(clock)
    cache.put("k", "v", until=clock.now)
    assert cache.get("k") is None and len(cache) == 0


def test_a_full_cache_drops_the_least_recently_used_entry() -> None:
    clock = Clock()
    cache: ExpiringCache[str, int] = ExpiringCache(clock, max_entries=2)
    cache.put("a", 1, until=clock.now + 60)
    cache.put("b", 2, until=clock.now + 60)
    assert cache.get("a") == 1
    cache.put("c", 3, until=clock.now + 60)
    assert sorted(cache) == ["a", "c"] and len(cache) == 2


def test_single_flight_shares_errors_too() -> None:
    flight = SingleFlight()
    with pytest.raises(ValueError):
        flight.do("k", lambda: (_ for _ in ()).throw(ValueError("x")))
    assert flight.do("k", lambda: 5) == 5


def test_waiting_on_a_shared_fetch_stops_at_the_budget() -> None:
    flight = SingleFlight()
    release = threading.Event()
    leader = threading.Thread(target=lambda: flight.do("k", lambda: release.wait(5)))
    leader.start()
    while not flight._calls:
        threading.Event().wait(0.01)
    with request_budget(0.2), pytest.raises(Unavailable):
        flight.do("k", lambda: True)
    release.set()
    leader.join(5)


def test_a_failure_holds_its_key_back_for_the_backoff_only() -> None:
    clock = Clock()
    failures = FailureBackoff(clock)
    assert not failures.backing_off("a", clock.now)
    failures.failed("a")
    assert failures.backing_off("a", clock.now + FAILURE_BACKOFF - 1)
    assert not failures.backing_off("a", clock.now + FAILURE_BACKOFF)
    assert not failures.backing_off("b", clock.now)
    failures.forget("a")
    assert not failures.backing_off("a", clock.now)
