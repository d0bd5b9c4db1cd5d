"""Behaviour §9: RFC 8693 token exchange — the request, the cache, and how failures map."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import InvalidToken, Unavailable
from kong_plugins.ai_mcp_oauth2.http import HttpResponse
from kong_plugins.ai_mcp_oauth2.token_exchange import GRANT_TYPE, TokenExchanger

from .conftest import kong_config
from .fakes import DOWN, Clock, FakeHttp, Gate, PausingLock, all_at_once, in_threads, join, ok, settle

HUGE = 10**400  # valid JSON; no float can hold it

ENDPOINT = "https://as.example.com/token"
ISSUED = {
    "access_token": "exchanged-token",
    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    "token_type": "Bearer",
    "expires_in": 300,
}


def exchanger(
    *answers: Any, request: dict[str, Any] | None = None, cache: dict[str, Any] | None = None, **overrides: Any
) -> tuple[TokenExchanger, FakeHttp, Clock]:
    record: dict[str, Any] = {
        "enabled": True,
        "token_endpoint": ENDPOINT,
        "client_auth": "client_secret_basic",
        "client_id": "exchanger",
        "client_secret": "ex-secret",
        "request": request,
        "cache": cache,
    }
    top = {k: v for k, v in overrides.items() if not k.startswith("te_")}
    record.update({k[3:]: v for k, v in overrides.items() if k.startswith("te_")})
    config = parse_config(kong_config(token_exchange=record, passthrough_credentials=True, **top))
    clock, http = Clock(), FakeHttp().on(ENDPOINT, *(answers or (ok(ISSUED),)))
    return TokenExchanger(config, http, clock), http, clock  # type: ignore[arg-type]


def form_of(http: FakeHttp, index: int = -1) -> dict[str, list[str]]:
    form: dict[str, list[str]] = {}
    for name, value in http.calls[index][2]["data"]:
        form.setdefault(name, []).append(value)
    return form


def test_the_request_carries_exactly_the_rfc_8693_fields() -> None:
    te, http, _ = exchanger(
        request={
            "audience": ["mcp-a", "mcp-b"],
            "scopes": ["read", "write"],
            "resource": "https://upstream.example.com/mcp",
        }
    )
    assert te.exchange("subject-token", None) == "exchanged-token"
    assert form_of(http) == {
        "grant_type": [GRANT_TYPE], "subject_token": ["subject-token"],
        "subject_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
        "requested_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
        "audience": ["mcp-a", "mcp-b"], "resource": ["https://upstream.example.com/mcp"], "scope": ["read write"],
    }  # fmt: skip
    assert http.calls[-1][2]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"exchanger:ex-secret").decode()


def test_actor_token_and_its_type_are_sent_only_together() -> None:
    te, http, _ = exchanger(request={"actor_token_type": "urn:ietf:params:oauth:token-type:jwt"})
    te.exchange("subject", "actor")
    form = form_of(http)
    assert form["actor_token"] == ["actor"] and form["actor_token_type"] == ["urn:ietf:params:oauth:token-type:jwt"]
    te.exchange("subject-2", None)
    assert "actor_token" not in form_of(http) and "actor_token_type" not in form_of(http)


def test_unset_parameters_are_not_sent() -> None:
    te, http, _ = exchanger()
    te.exchange("s", None)
    assert set(form_of(http)) == {"grant_type", "subject_token", "subject_token_type", "requested_token_type"}


@pytest.mark.parametrize("auth,expected_form,expected_header", [
    ("client_secret_post", {"client_id": ["exchanger"], "client_secret": ["ex-secret"]}, False),
    ("none", {"client_id": ["exchanger"]}, False),
])  # fmt: skip
def test_exchange_client_authentication(auth: str, expected_form: dict[str, list[str]], expected_header: bool) -> None:
    te, http, _ = exchanger(te_client_auth=auth)
    te.exchange("s", None)
    form = form_of(http)
    assert {k: form[k] for k in expected_form} == expected_form
    assert ("Authorization" in http.calls[-1][2]["headers"]) is expected_header
    assert auth != "none" or "client_secret" not in form


def test_inherit_uses_the_top_level_client() -> None:
    te, http, _ = exchanger(
        te_client_auth="inherit",
        te_client_id=None,
        te_client_secret=None,
        client_id="kong",
        client_secret="kong-secret",
        client_auth="client_secret_post",
    )
    te.exchange("s", None)
    assert form_of(http)["client_id"] == ["kong"] and form_of(http)["client_secret"] == ["kong-secret"]


def test_results_are_cached_for_expires_in_less_a_margin() -> None:
    te, http, clock = exchanger()
    te.exchange("s", "a")
    te.exchange("s", "a")
    assert len(http.calls) == 1
    te.exchange("s", "other-actor")  # the actor token is part of the key
    te.exchange("other-subject", "a")
    assert len(http.calls) == 3
    clock.now += 289
    te.exchange("s", "a")
    assert len(http.calls) == 3
    clock.now += 2  # 300 - 10 s margin passed
    te.exchange("s", "a")
    assert len(http.calls) == 4


def test_cache_ttl_applies_without_expires_in() -> None:
    without = {k: v for k, v in ISSUED.items() if k != "expires_in"}
    te, http, clock = exchanger(ok(without), cache={"enabled": True, "ttl": 60})
    te.exchange("s", None)
    clock.now += 59
    te.exchange("s", None)
    assert len(http.calls) == 1
    clock.now += 2
    te.exchange("s", None)
    assert len(http.calls) == 2


@pytest.mark.parametrize("cache", [{"enabled": True}, {"enabled": False}])
@pytest.mark.parametrize(
    "expires_in", [pytest.param(HUGE, id="huge"), pytest.param(-HUGE, id="-huge"), "300", True, [300]]
)
def test_an_expires_in_that_is_no_usable_number_is_a_malformed_answer_503(
    expires_in: Any, cache: dict[str, Any]
) -> None:
    """RFC 6749 §5.1: seconds, a JSON number. A 400-digit one raised OverflowError (a 500)."""
    te, http, _ = exchanger(ok({**ISSUED, "expires_in": expires_in}), cache=cache)
    with pytest.raises(Unavailable) as info:
        te.exchange("s", None)
    assert info.value.description == "The token exchange answer's expires_in is not a number"


def test_cache_disabled_really_disables_it() -> None:
    """Kong 3.14.0.2 fixed exactly this: the toggle was read from cache.ttl."""
    te, http, _ = exchanger(cache={"enabled": False, "ttl": 3600})
    te.exchange("s", None)
    te.exchange("s", None)
    assert len(http.calls) == 2


def test_concurrent_identical_exchanges_are_made_once() -> None:
    release = threading.Event()

    def slow(method: str, url: str, **kwargs: Any) -> HttpResponse:
        release.wait(5)
        return ok(ISSUED)

    te, http, _ = exchanger(slow)
    results = all_at_once(20, lambda: te.exchange("s", None), release)
    assert results == ["exchanged-token"] * 20 and len(http.calls) == 1


@pytest.mark.parametrize(
    "answer",
    [
        ok({"error": "invalid_grant"}, 400),
        ok({"error": "invalid_request"}, 400),
        ok({"error": "invalid_target"}, 400),
        ok({}, 400),
    ],
)
def test_the_endpoint_refusing_the_token_is_401(answer: HttpResponse) -> None:
    te, _, _ = exchanger(answer)
    with pytest.raises(InvalidToken, match="^The access token could not be exchanged for the upstream$"):
        te.exchange("s", None)


REFUSED_OR_FAILED = "The token exchange endpoint refused the gateway or failed"
NOT_AN_OBJECT = "The token exchange answer is not a JSON object"
NO_ACCESS_TOKEN = "The token exchange answer has no usable access_token"


@pytest.mark.parametrize("answer,description", [
    (DOWN, "The token exchange endpoint could not be reached"),
    (ok({"error": "server_error"}, 500), REFUSED_OR_FAILED), (ok({"error": "invalid_client"}, 401), REFUSED_OR_FAILED),
    (ok({"error": "invalid_client"}, 400), REFUSED_OR_FAILED), (ok({"error": "unauthorized_client"}, 400), REFUSED_OR_FAILED),
    (ok({"error": "unsupported_grant_type"}, 400), REFUSED_OR_FAILED), (ok({}, 403), REFUSED_OR_FAILED),
    (ok({"token_type": "Bearer"}), NO_ACCESS_TOKEN), (ok(["access_token"]), NOT_AN_OBJECT),
    (ok({"access_token": "bad\r\nvalue"}), NO_ACCESS_TOKEN), (ok({"access_token": "has space"}), NO_ACCESS_TOKEN),
    (ok({"access_token": ""}), NO_ACCESS_TOKEN), (HttpResponse(200, b"<html>"), NOT_AN_OBJECT),
])  # fmt: skip
def test_failures_and_refusals_of_the_gateway_are_503(answer: Any, description: str) -> None:
    te, _, _ = exchanger(answer)
    with pytest.raises(Unavailable) as info:
        te.exchange("s", None)
    assert info.value.description == description


ACCESS = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
REFRESH = "urn:ietf:params:oauth:token-type:refresh_token"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
NOT_REQUESTED = "The token exchange answer's issued_token_type is not the requested type"
NOT_BEARER = "The token exchange answer's token_type is not Bearer"
NO_TOKEN_TYPE = "The token exchange answer has no token_type"


@pytest.mark.parametrize("requested,change,description", [
    (ACCESS, {"issued_token_type": None}, NOT_REQUESTED),
    (ACCESS, {"issued_token_type": REFRESH}, NOT_REQUESTED),
    (ACCESS, {"issued_token_type": ID_TOKEN, "token_type": "N_A"}, NOT_REQUESTED),
    (ACCESS, {"issued_token_type": JWT}, NOT_REQUESTED),
    (ACCESS, {"issued_token_type": ACCESS.upper()}, NOT_REQUESTED),
    (ACCESS, {"issued_token_type": [ACCESS]}, NOT_REQUESTED),
    (ACCESS, {"token_type": None}, NO_TOKEN_TYPE),
    (ACCESS, {"token_type": 1}, NO_TOKEN_TYPE),
    (ACCESS, {"token_type": "N_A"}, NOT_BEARER),
    (ACCESS, {"token_type": "DPoP"}, NOT_BEARER),
    (ACCESS, {"token_type": "Bearer "}, NOT_BEARER),
    ("", {"issued_token_type": REFRESH}, NOT_REQUESTED),  # nothing requested: an access token is wanted
    (JWT, {}, NOT_REQUESTED),  # an access_token-typed answer to a JWT request
    (JWT, {"issued_token_type": JWT, "token_type": "N_A"}, NOT_BEARER),  # a JWT that is no access token
    (ID_TOKEN, {"issued_token_type": ID_TOKEN, "token_type": None}, NO_TOKEN_TYPE),
    (ID_TOKEN, {"issued_token_type": ACCESS}, NOT_REQUESTED),
])  # fmt: skip
def test_an_answer_of_another_token_type_is_503_and_never_forwarded(
    requested: str, change: dict[str, Any], description: str
) -> None:
    """RFC 8693 §2.2.1: issued_token_type and token_type are REQUIRED; the token goes upstream as Bearer."""
    answer = {k: v for k, v in {**ISSUED, **change}.items() if v is not None}
    good = {**ISSUED, "issued_token_type": requested or ACCESS}
    te, http, _ = exchanger(ok(answer), ok(good), request={"requested_token_type": requested})
    with pytest.raises(Unavailable) as info:
        te.exchange("s", None)
    assert info.value.description == description
    te.exchange("s", None)
    assert len(http.calls) == 2  # the refused answer was not cached


@pytest.mark.parametrize("requested,answer", [
    (ACCESS, {"token_type": "bearer"}),
    (ACCESS, {"token_type": "BEARER"}),
    (None, {}),  # Kong's default requested type is the access token's
    ("", {}),  # requested_token_type not sent: the access token is what the gateway wants
    (JWT, {"issued_token_type": JWT}),
    (ID_TOKEN, {"issued_token_type": ID_TOKEN, "token_type": "N_A"}),  # asked for on purpose
])  # fmt: skip
def test_an_answer_of_the_requested_type_is_forwarded(requested: str | None, answer: dict[str, Any]) -> None:
    te, http, _ = exchanger(ok({**ISSUED, **answer}), request={"requested_token_type": requested})
    assert te.exchange("s", None) == "exchanged-token"
    assert form_of(http).get("requested_token_type") == ([requested or ACCESS] if requested != "" else None)


def test_failures_are_never_cached() -> None:
    te, http, _ = exchanger(ok({}, 500), ok(ISSUED))
    with pytest.raises(Unavailable, match=f"^{REFUSED_OR_FAILED}$"):
        te.exchange("s", None)
    assert te.exchange("s", None) == "exchanged-token"


# Cache transitions under concurrent requests: the exchange is held in flight by a Gate while the
# others arrive; every request gets a token and the endpoint is asked once.

WIDTH = 40


def held_exchange(te: TokenExchanger, http: FakeHttp, answer: Any) -> tuple[Gate, list[threading.Thread]]:
    gate = Gate(answer)
    http.on(ENDPOINT, gate)
    threads, _ = in_threads(1, lambda _: te.exchange("s", None))
    assert gate.entered.wait(10)
    return gate, threads


def test_when_the_exchanged_token_expires_concurrent_requests_share_one_new_exchange() -> None:
    te, http, clock = exchanger()
    assert te.exchange("s", None) == "exchanged-token"
    clock.now += 290  # expires_in 300 less the 10 s margin
    gate, leader = held_exchange(te, http, ok({**ISSUED, "access_token": "second"}))
    threads, results = in_threads(WIDTH, lambda _: te.exchange("s", None))
    settle(threads)
    gate.open()
    join(threads + leader)
    assert results == ["second"] * WIDTH and len(http.calls) == 2
    clock.now += 289
    assert te.exchange("s", None) == "second" and len(http.calls) == 2


def test_a_request_that_missed_the_cache_as_an_exchange_ended_uses_its_result() -> None:
    """The request found no entry, then the exchange in flight completed and stored one before
    this request reached the shared call: it made a second exchange."""
    te, http, _ = exchanger()
    lock = PausingLock()
    te.cache.lock = lock  # type: ignore[union-attr]
    gate, leader = held_exchange(te, http, ok(ISSUED))
    finish = lock.run_late(lambda: te.exchange("s", None))
    assert lock.paused.is_set()  # it missed the cache
    assert finish(gate, leader) == "exchanged-token" and len(http.calls) == 1


def test_a_failed_exchange_is_503_for_every_request_that_shared_it_and_is_not_remembered() -> None:
    te, http, _ = exchanger()
    gate, leader = held_exchange(te, http, ok({"error": "server_error"}, 500))
    threads, results = in_threads(WIDTH, lambda _: te.exchange("s", None))
    settle(threads)
    gate.open()
    join(threads + leader)
    assert [type(r).__name__ for r in results] == ["Unavailable"] * WIDTH and len(http.calls) == 1
    http.on(ENDPOINT, ok(ISSUED))
    assert te.exchange("s", None) == "exchanged-token" and len(http.calls) == 2
