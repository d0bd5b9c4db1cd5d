"""Behaviour §5/§6/§11: validated tokens are cached by hash until they expire; fetches are shared."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import InvalidToken
from kong_plugins.ai_mcp_oauth2.http import HttpResponse
from kong_plugins.ai_mcp_oauth2.tokens import TokenValidator

from .conftest import kong_config
from .fakes import ISSUER, RESOURCE, Clock, FakeHttp, make_key, ok

JWKS = "https://as.example.com/jwks"
INTROSPECT = "https://as.example.com/introspect"
KEY = make_key("ES256")


def jwt_validator(**config: Any) -> tuple[TokenValidator, FakeHttp, Clock]:
    clock, http = Clock(), FakeHttp().on(JWKS, ok({"keys": [KEY.public_jwk()]}))
    options = {"jwks_endpoint": JWKS, "resource": RESOURCE, "authorization_servers": [ISSUER], **config}
    return TokenValidator(parse_config(kong_config(**options)), http, clock), http, clock  # type: ignore[arg-type]


def introspecting(*answers: Any, **config: Any) -> tuple[TokenValidator, FakeHttp, Clock]:
    clock, http = Clock(), FakeHttp().on(INTROSPECT, *answers)
    options = {"introspection_endpoint": INTROSPECT, "client_id": "gw", "client_secret": "s", **config}
    return TokenValidator(parse_config(kong_config(**options)), http, clock), http, clock  # type: ignore[arg-type]


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
    with pytest.raises(InvalidToken):
        validator.verify(token)
    assert len(calls) == 2


def test_the_cache_holds_hashes_not_tokens_and_is_bounded() -> None:
    validator, _, clock = jwt_validator()
    validator.cache = type(validator.cache)(3, ttu=validator.cache.ttu, timer=clock)  # type: ignore[attr-defined]
    tokens = [KEY.mint({"jti": str(i)}, now=clock.now) for i in range(5)]
    for token in tokens:
        validator.verify(token)
    assert len(validator.cache) == 3
    assert all(isinstance(k, bytes) and len(k) == 32 for k in validator.cache)
    assert not any(t.encode() in k for k in validator.cache for t in tokens)


def test_invalid_jwts_are_not_cached() -> None:
    validator, _, clock = jwt_validator()
    with pytest.raises(InvalidToken):
        validator.verify(KEY.mint({"aud": "https://other"}, now=clock.now))
    assert len(validator.cache) == 0


def test_introspection_results_are_cached_when_cache_introspection() -> None:
    validator, http, clock = introspecting(ok({"active": True, "aud": RESOURCE, "exp": Clock().now + 60}))
    for _ in range(3):
        validator.verify("opaque")
    assert http.count(INTROSPECT) == 1
    clock.now += 61
    with pytest.raises(InvalidToken):
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
        with pytest.raises(InvalidToken):
            validator.verify("revoked")
    assert http.count(INTROSPECT) == 1
    clock.now += 6
    with pytest.raises(InvalidToken):
        validator.verify("revoked")
    assert http.count(INTROSPECT) == 2


def test_concurrent_requests_with_one_new_token_share_one_introspection() -> None:
    release = threading.Event()

    def slow(method: str, url: str, **kwargs: Any) -> HttpResponse:
        release.wait(5)
        return ok({"active": True, "aud": RESOURCE})

    validator, http, _ = introspecting(slow)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(validator.verify("new-token"))) for _ in range(20)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(results) == 20 and http.count(INTROSPECT) == 1
