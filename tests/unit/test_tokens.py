"""Behaviour §5/§6/§11: validated tokens are cached by hash until they expire; fetches are shared."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.cache import ExpiringCache
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import InvalidToken
from kong_plugins.ai_mcp_oauth2.http import HttpResponse
from kong_plugins.ai_mcp_oauth2.introspection import INACTIVE_TTL
from kong_plugins.ai_mcp_oauth2.tokens import CachingTokenVerifier

from .conftest import kong_config
from .fakes import (
    ISSUER,
    RESOURCE,
    Clock,
    FakeHttp,
    Gate,
    PausingLock,
    all_at_once,
    in_threads,
    join,
    make_key,
    ok,
    settle,
)

JWKS = "https://as.example.com/jwks"
INTROSPECT = "https://as.example.com/introspect"
KEY = make_key("ES256")


def jwt_validator(**config: Any) -> tuple[CachingTokenVerifier, FakeHttp, Clock]:
    clock, http = Clock(), FakeHttp().on(JWKS, ok({"keys": [KEY.public_jwk()]}))
    options = {"jwks_endpoint": JWKS, "resource": RESOURCE, "authorization_servers": [ISSUER], **config}
    return CachingTokenVerifier(parse_config(kong_config(**options)), http, clock), http, clock  # type: ignore[arg-type]


def introspecting(*answers: Any, **config: Any) -> tuple[CachingTokenVerifier, FakeHttp, Clock]:
    clock, http = Clock(), FakeHttp().on(INTROSPECT, *answers)
    options = {"introspection_endpoint": INTROSPECT, "client_id": "gw", "client_secret": "s", **config}
    return CachingTokenVerifier(parse_config(kong_config(**options)), http, clock), http, clock  # type: ignore[arg-type]


def test_a_repeated_jwt_is_not_verified_again_until_it_expires() -> None:
    validator, http, clock = jwt_validator()
    token = KEY.mint(now=clock.now)
    calls = []
    original = validator.jwt.validate  # type: ignore[union-attr]
    validator.jwt.validate = lambda t: calls.append(t) or original(t)  # type: ignore[union-attr,method-assign]
    for _ in range(5):
        assert validator.verify(token)["sub"] == "alice"
    assert len(calls) == 1
    clock.now += 301
    with pytest.raises(InvalidToken, match="^The access token has expired$"):
        validator.verify(token)
    assert len(calls) == 2


def test_the_cache_holds_hashes_not_tokens_and_is_bounded() -> None:
    validator, _, clock = jwt_validator()
    validator.cache = ExpiringCache(clock, max_entries=3)
    tokens = [KEY.mint({"jti": str(i)}, now=clock.now) for i in range(5)]
    for token in tokens:
        validator.verify(token)
    assert len(validator.cache) == 3
    # keyed by each token's SHA-256 (a key that is the token, or part of it, is none of these) ...
    assert set(validator.cache) <= {hashlib.sha256(t.encode()).digest() for t in tokens}
    # ... and no entry holds the token itself
    assert not any(t in repr(entry) for key in validator.cache for entry in [validator.cache.get(key)] for t in tokens)


def test_invalid_jwts_are_not_cached() -> None:
    validator, _, clock = jwt_validator()
    with pytest.raises(InvalidToken, match="^The access token is not intended for this resource$"):
        validator.verify(KEY.mint({"aud": "https://other"}, now=clock.now))
    assert len(validator.cache) == 0


def test_introspection_results_are_cached_when_cache_introspection() -> None:
    validator, http, clock = introspecting(ok({"active": True, "aud": RESOURCE, "exp": Clock().now + 60}))
    for _ in range(3):
        validator.verify("opaque")
    assert http.count(INTROSPECT) == 1
    clock.now += 61
    with pytest.raises(InvalidToken, match="^The access token has expired$"):
        validator.verify("opaque")
    assert http.count(INTROSPECT) == 2


def test_introspection_is_not_cached_when_disabled() -> None:
    validator, http, _ = introspecting(ok({"active": True, "aud": RESOURCE}), cache_introspection=False)
    validator.verify("opaque")
    validator.verify("opaque")
    assert http.count(INTROSPECT) == 2


def test_inactive_results_are_cached_a_few_seconds_only() -> None:
    validator, http, clock = introspecting(ok({"active": False}))
    for _ in range(3):
        with pytest.raises(InvalidToken, match="^The access token is not active$"):
            validator.verify("revoked")
    assert http.count(INTROSPECT) == 1
    clock.now += 6
    with pytest.raises(InvalidToken, match="^The access token is not active$"):
        validator.verify("revoked")
    assert http.count(INTROSPECT) == 2


def test_concurrent_requests_with_one_new_token_share_one_introspection() -> None:
    release = threading.Event()

    def slow(method: str, url: str, **kwargs: Any) -> HttpResponse:
        release.wait(5)
        return ok({"active": True, "aud": RESOURCE})

    validator, http, _ = introspecting(slow)
    results = all_at_once(20, lambda: validator.verify("new-token"), release)
    assert len(results) == 20 and http.count(INTROSPECT) == 1


# Cache transitions under concurrent requests: each request with a valid token is accepted and
# the server is asked once. The introspection is held in flight by a Gate while the others arrive.

WIDTH = 40


def outcome(result: Any) -> Any:
    return type(result).__name__ if isinstance(result, BaseException) else result["sub"]


def held(
    validator: CachingTokenVerifier, http: FakeHttp, answer: Any, token: str
) -> tuple[Gate, list[threading.Thread]]:
    gate = Gate(answer)
    http.on(INTROSPECT, gate)
    threads, _ = in_threads(1, lambda _: validator.verify(token))
    assert gate.entered.wait(10)
    return gate, threads


def burst(validator: CachingTokenVerifier, gate: Gate, leader: list[threading.Thread], token: str) -> list[Any]:
    threads, results = in_threads(WIDTH, lambda _: validator.verify(token))
    settle(threads)
    gate.open()
    join(threads + leader)
    return [outcome(r) for r in results]


def active(until: float | None, sub: str = "alice") -> HttpResponse:
    claims = {"active": True, "aud": RESOURCE, "sub": sub}
    return ok(claims if until is None else {**claims, "exp": until})


def test_a_new_token_in_concurrent_requests_is_introspected_once() -> None:
    validator, http, _ = introspecting()
    gate, leader = held(validator, http, active(Clock().now + 60), "new")
    assert burst(validator, gate, leader, "new") == ["alice"] * WIDTH
    assert http.count(INTROSPECT) == 1


def test_when_the_token_expires_concurrent_requests_share_one_introspection_then_its_inactive_answer() -> None:
    validator, http, clock = introspecting(active(Clock().now + 60))
    validator.verify("t")
    clock.now += 60
    gate, leader = held(validator, http, ok({"active": False}), "t")
    assert burst(validator, gate, leader, "t") == ["InvalidToken"] * WIDTH
    assert http.count(INTROSPECT) == 2
    threads, results = in_threads(WIDTH, lambda _: validator.verify("t"))
    join(threads)
    assert [outcome(r) for r in results] == ["InvalidToken"] * WIDTH and http.count(INTROSPECT) == 2


def test_after_the_one_hour_cap_concurrent_requests_share_one_introspection() -> None:
    validator, http, clock = introspecting(active(None))
    validator.verify("t")
    clock.now += 3599
    validator.verify("t")
    assert http.count(INTROSPECT) == 1
    clock.now += 1
    gate, leader = held(validator, http, active(None, "bob"), "t")
    assert burst(validator, gate, leader, "t") == ["bob"] * WIDTH
    assert http.count(INTROSPECT) == 2


def test_after_the_inactive_ttl_concurrent_requests_share_one_introspection() -> None:
    validator, http, clock = introspecting(ok({"active": False}))
    with pytest.raises(InvalidToken, match="^The access token is not active$"):
        validator.verify("t")
    clock.now += INACTIVE_TTL
    gate, leader = held(validator, http, active(clock.now + 60), "t")  # e.g. a token not yet known
    assert burst(validator, gate, leader, "t") == ["alice"] * WIDTH
    assert http.count(INTROSPECT) == 2


def test_a_request_that_missed_the_cache_as_an_introspection_ended_uses_its_result() -> None:
    """The request found no entry, then the introspection in flight completed and stored one
    before this request reached the shared call: it started a second introspection."""
    validator, http, clock = introspecting()
    lock = PausingLock()
    validator.cache.lock = lock  # type: ignore[assignment]
    gate, leader = held(validator, http, active(clock.now + 60), "t")
    finish = lock.run_late(lambda: validator.verify("t"))
    assert lock.paused.is_set()  # it missed the cache
    assert outcome(finish(gate, leader)) == "alice"
    assert http.count(INTROSPECT) == 1


def test_a_burst_of_new_jwts_on_a_new_instance_fetches_the_keys_once() -> None:
    validator, http, clock = jwt_validator()
    gate = Gate(ok({"keys": [KEY.public_jwk()]}))
    http.on(JWKS, gate)
    threads, results = in_threads(WIDTH, lambda i: validator.verify(KEY.mint({"sub": f"u{i}"}, now=clock.now)))
    assert gate.entered.wait(10)
    settle(threads)  # the leader waits at the gate, the others on its fetch
    gate.open()
    join(threads)
    assert [outcome(r) for r in results] == [f"u{i}" for i in range(WIDTH)]
    assert http.count(JWKS) == 1
