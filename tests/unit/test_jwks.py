"""Behaviour §5/§7: the key set cache of one ``jwks_uri`` at each of its transitions, under
concurrent requests: the first fetch, expiry, an unknown ``kid`` (key rotation), a failed fetch
and recovery. Every request that could be answered is answered, and the server is asked once.

A fetch is held in flight by a :class:`Gate` while the other requests arrive; ``settle`` waits
until each of them has either answered or is waiting on that fetch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.cache import FAILURE_BACKOFF
from kong_plugins.ai_mcp_oauth2.http import OutboundCallFailed
from kong_plugins.ai_mcp_oauth2.jwks import REFRESH_COOLDOWN, KeySet

from .fakes import DOWN, Clock, FakeHttp, Gate, Key, PausingLock, in_threads, join, make_key, ok, settle

JWKS = "https://as.example.com/jwks"
TTL = 300.0
OLD, NEW = make_key("RS256"), make_key("RS256")
WIDTH = 40  # concurrent requests


def jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def keyset(*keys: Key) -> tuple[KeySet, FakeHttp, Clock]:
    clock = Clock()
    http = FakeHttp().on(JWKS, ok(jwks(*keys)))
    return KeySet(JWKS, http, TTL, clock), http, clock  # type: ignore[arg-type]


def kids(result: Any) -> list[str | None]:
    """The kids a request was given; an exception is returned as such (for the assertion message)."""
    if isinstance(result, BaseException):
        return [type(result).__name__]
    return [k.kid for k in result]


def held_fetch(ks: KeySet, http: FakeHttp, answer: Any, kid: str | None) -> tuple[Gate, list[Any], Any]:
    """A leader request whose fetch is held at the server until the gate opens."""
    gate = Gate(answer)
    http.on(JWKS, gate)
    threads, results = in_threads(1, lambda _: ks.candidates(kid, "RS256"))
    assert gate.entered.wait(10)
    return gate, results, threads


def at_once(ks: KeySet, kids_asked: Sequence[str | None]) -> list[list[str | None]]:
    """One request per kid, all at the same time; what each was answered."""
    threads, results = in_threads(len(kids_asked), lambda i: ks.candidates(kids_asked[i], "RS256"))
    join(threads)
    return [kids(r) for r in results]


def during_held_fetch(
    ks: KeySet, http: FakeHttp, answer: Any, leader_kid: str | None, kids_asked: Sequence[str | None]
) -> tuple[list[list[str | None]], list[list[str | None]]]:
    """A leader's fetch is held at the server until one request per kid has arrived (``settle``);
    then it completes. What the leader and each of the others were answered."""
    gate, leader, leader_thread = held_fetch(ks, http, answer, leader_kid)
    threads, results = in_threads(len(kids_asked), lambda i: ks.candidates(kids_asked[i], "RS256"))
    settle(threads)
    gate.open()
    join(threads + leader_thread)
    return [kids(r) for r in leader], [kids(r) for r in results]


def test_requests_arriving_while_a_rotation_refetch_is_in_flight_wait_for_it_and_are_accepted() -> None:
    """Issue 10 item 3: the request that started the refetch moved the cooldown clock, and the
    others, finding the cooldown not elapsed, refused with 401 instead of waiting for the fetch."""
    ks, http, clock = keyset(OLD)
    assert kids(ks.candidates(OLD.kid, "RS256")) == [OLD.kid]
    clock.now += REFRESH_COOLDOWN + 1
    leader, results = during_held_fetch(ks, http, ok(jwks(OLD, NEW)), NEW.kid, [NEW.kid] * WIDTH)
    assert leader + results == [[NEW.kid]] * (WIDTH + 1)
    assert http.count(JWKS) == 2


def test_rotation_that_removes_the_old_key_accepts_new_kids_and_refuses_the_old_one_without_asking_again() -> None:
    ks, http, clock = keyset(OLD)
    ks.candidates(OLD.kid, "RS256")
    clock.now += REFRESH_COOLDOWN + 1
    leader, results = during_held_fetch(ks, http, ok(jwks(NEW)), NEW.kid, [OLD.kid, NEW.kid] * (WIDTH // 2))
    assert leader == [[NEW.kid]]
    assert results[1::2] == [[NEW.kid]] * (WIDTH // 2)
    # old-kid requests that came while the refetch was in flight used the keys then held
    assert results[0::2] == [[OLD.kid]] * (WIDTH // 2)
    results = at_once(ks, [OLD.kid, NEW.kid] * (WIDTH // 2))
    assert results == [[], [NEW.kid]] * (WIDTH // 2)  # the old key is gone: 401
    assert http.count(JWKS) == 2


def test_a_request_that_looked_before_a_refetch_completed_uses_the_keys_it_brought() -> None:
    """(b): a request found no key, then a fetch completed before it could act: it re-matches
    against the new keys instead of refusing because the cooldown clock moved meanwhile."""
    ks, http, clock = keyset(OLD)
    ks.candidates(OLD.kid, "RS256")
    clock.now += REFRESH_COOLDOWN + 1
    lock = PausingLock()
    ks.lock = lock  # type: ignore[assignment]
    gate, leader, leader_thread = held_fetch(ks, http, ok(jwks(OLD, NEW)), NEW.kid)
    # paused after it looked at the key set (or, without that lock, already answered)
    finish = lock.run_late(lambda: ks.candidates(NEW.kid, "RS256"))
    late = finish(gate, leader_thread)
    assert kids(leader[0]) == kids(late) == [NEW.kid]
    assert http.count(JWKS) == 2


def test_unknown_kids_cause_at_most_one_fetch_per_cooldown_even_when_they_arrive_together() -> None:
    ks, http, clock = keyset(OLD)
    ks.candidates(OLD.kid, "RS256")
    assert kids(ks.candidates("nobody", "RS256")) == []  # within the cooldown of the first fetch
    assert http.count(JWKS) == 1
    clock.now += REFRESH_COOLDOWN
    leader, results = during_held_fetch(
        ks, http, ok(jwks(OLD)), "flood-leader", [uuid.uuid4().hex for _ in range(WIDTH)]
    )
    assert leader + results == [[]] * (WIDTH + 1)
    assert http.count(JWKS) == 2
    clock.now += REFRESH_COOLDOWN - 1
    results = at_once(ks, [uuid.uuid4().hex for _ in range(WIDTH)])
    assert results == [[]] * WIDTH and http.count(JWKS) == 2
    clock.now += 1
    results = at_once(ks, [uuid.uuid4().hex for _ in range(WIDTH)])
    assert results == [[]] * WIDTH and http.count(JWKS) == 3


def test_a_failed_refetch_is_503_for_every_request_until_the_next_one_may_be_made() -> None:
    """The key may exist but cannot be had: not a 401 (which sends an MCP client to re-authorize
    for a token signed with the same key), neither for the requests that shared the failed fetch
    nor for those arriving after it within the cooldown."""
    ks, http, clock = keyset(OLD)
    ks.candidates(OLD.kid, "RS256")
    clock.now += REFRESH_COOLDOWN + 1
    leader, results = during_held_fetch(ks, http, DOWN, NEW.kid, [NEW.kid] * WIDTH)
    assert leader + results == [["OutboundCallFailed"]] * (WIDTH + 1)
    clock.now += REFRESH_COOLDOWN - 1
    results = at_once(ks, [NEW.kid] * WIDTH)
    assert results == [["OutboundCallFailed"]] * WIDTH
    assert kids(ks.candidates(OLD.kid, "RS256")) == [OLD.kid]  # keys held still serve their tokens
    assert http.count(JWKS) == 2
    http.on(JWKS, ok(jwks(OLD, NEW)))
    clock.now += 1
    results = at_once(ks, [NEW.kid] * WIDTH)
    assert results == [[NEW.kid]] * WIDTH and http.count(JWKS) == 3


def test_cold_start_fetches_once_for_all_concurrent_requests() -> None:
    ks, http, _ = keyset()
    leader, results = during_held_fetch(ks, http, ok(jwks(OLD, NEW)), OLD.kid, [OLD.kid, NEW.kid] * (WIDTH // 2))
    assert leader == [[OLD.kid]]
    assert results == [[OLD.kid], [NEW.kid]] * (WIDTH // 2)
    assert http.count(JWKS) == 1


def test_cold_start_failure_is_503_for_all_and_asks_once_per_backoff_window() -> None:
    ks, http, clock = keyset()
    leader, results = during_held_fetch(ks, http, DOWN, OLD.kid, [OLD.kid] * WIDTH)
    assert leader + results == [["OutboundCallFailed"]] * (WIDTH + 1)
    assert http.count(JWKS) == 1
    clock.now += FAILURE_BACKOFF - 1
    # inside the window: answered at once, nobody asked
    results = at_once(ks, [OLD.kid] * WIDTH)
    assert results == [["OutboundCallFailed"]] * WIDTH and http.count(JWKS) == 1
    clock.now += 1
    leader, results = during_held_fetch(ks, http, ok(jwks(OLD)), OLD.kid, [OLD.kid] * WIDTH)
    assert leader + results == [[OLD.kid]] * (WIDTH + 1)
    assert http.count(JWKS) == 2


def test_a_request_that_looked_before_a_failed_first_fetch_ended_does_not_ask_again() -> None:
    ks, http, _ = keyset()
    lock = PausingLock()
    ks.lock = lock  # type: ignore[assignment]
    gate, leader, leader_thread = held_fetch(ks, http, DOWN, OLD.kid)
    late = lock.run_late(lambda: ks.candidates(OLD.kid, "RS256"))(gate, leader_thread)
    assert kids(leader[0]) == kids(late) == ["OutboundCallFailed"]
    assert http.count(JWKS) == 1


def test_expiry_refreshes_once_for_all_concurrent_requests() -> None:
    ks, http, clock = keyset(OLD)
    ks.candidates(OLD.kid, "RS256")
    clock.now += TTL
    leader, results = during_held_fetch(ks, http, ok(jwks(OLD, NEW)), OLD.kid, [OLD.kid, NEW.kid] * (WIDTH // 2))
    assert leader + results == [[OLD.kid]] + [[OLD.kid], [NEW.kid]] * (WIDTH // 2)
    assert http.count(JWKS) == 2
    clock.now += TTL - 1
    ks.candidates(NEW.kid, "RS256")
    assert http.count(JWKS) == 2


def test_a_request_that_looked_at_expired_keys_before_the_refresh_completed_does_not_refresh_again() -> None:
    ks, http, clock = keyset(OLD)
    ks.candidates(OLD.kid, "RS256")
    clock.now += TTL
    lock = PausingLock()
    ks.lock = lock  # type: ignore[assignment]
    gate, leader, leader_thread = held_fetch(ks, http, ok(jwks(OLD, NEW)), OLD.kid)
    late = lock.run_late(lambda: ks.candidates(NEW.kid, "RS256"))(gate, leader_thread)
    assert kids(leader[0]) == [OLD.kid] and kids(late) == [NEW.kid]
    assert http.count(JWKS) == 2


def test_a_failed_refresh_at_expiry_keeps_the_keys_held_for_everyone_and_asks_once_per_backoff_window() -> None:
    ks, http, clock = keyset(OLD)
    ks.candidates(OLD.kid, "RS256")
    clock.now += TTL
    leader, results = during_held_fetch(ks, http, DOWN, OLD.kid, [OLD.kid] * WIDTH)
    assert leader + results == [[OLD.kid]] * (WIDTH + 1)
    clock.now += FAILURE_BACKOFF - 1
    results = at_once(ks, [OLD.kid] * WIDTH)
    assert results == [[OLD.kid]] * WIDTH and http.count(JWKS) == 2
    clock.now += 1
    http.on(JWKS, ok(jwks(OLD)))
    results = at_once(ks, [OLD.kid] * WIDTH)
    assert results == [[OLD.kid]] * WIDTH and http.count(JWKS) == 3


def test_a_key_set_without_any_keys_is_503() -> None:
    ks, http, _ = keyset()
    http.on(JWKS, ok({"not": "a jwks"}))
    with pytest.raises(OutboundCallFailed):
        ks.candidates(OLD.kid, "RS256")


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_a_jwk_with_private_members_is_skipped_without_being_parsed(
    member: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An RSA "private key" with a huge d and no primes makes cryptography factor the modulus: one
    call that never yields, stalling every request of the server (Kong then proxies them)."""
    from kong_plugins.ai_mcp_oauth2 import jwks

    parsed: list[dict[str, Any]] = []
    for name, algorithm in jwks.ALGORITHMS.items():
        monkeypatch.setitem(
            jwks.ALGORITHMS,
            name,
            type(
                "Recording",
                (),
                {"from_jwk": staticmethod(lambda jwk, a=algorithm: parsed.append(jwk) or a.from_jwk(jwk))},
            ),
        )
    public = make_key("RS256").public_jwk()
    assert jwks.bind_key(public) is not None and len(parsed) == 1
    assert jwks.bind_key({**public, member: "A" * 6700}) is None  # a 40 000-bit d
    assert len(parsed) == 1


def test_oversized_rsa_members_are_skipped_without_being_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    from kong_plugins.ai_mcp_oauth2 import jwks

    monkeypatch.setitem(jwks.ALGORITHMS, "RS256", None)  # any parse would raise: skipped or crashed
    public = make_key("RS256").public_jwk()
    assert jwks.bind_key({**public, "n": "A" * 2800}) is None  # a 16 384-bit modulus
    assert jwks.bind_key({**public, "e": "A" * 500}) is None  # a 3000-bit exponent: 6 ms a verify
    assert jwks.bind_key({**public, "e": "_____w"}) is None  # 2**36 - 1: six characters, 36 bits
    assert jwks.bind_key({**public, "n": 12345}) is None


@pytest.mark.parametrize("members", [{"crv": []}, {"crv": {"a": 1}}, {"kty": ["EC"]}, {"crv": "X25519"}])
def test_a_jwk_whose_type_or_curve_is_unusable_is_skipped(members: dict[str, Any]) -> None:
    from kong_plugins.ai_mcp_oauth2 import jwks

    public = make_key("ES256").public_jwk()
    assert jwks.bind_key(public) is not None
    assert jwks.bind_key({**public, **members}) is None
    assert jwks.key_algorithms({**public, **members}) == ()
