"""The access-phase decision (behaviour §2–§4, §11), through a fake request that counts questions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2 import gateway
from kong_plugins.ai_mcp_oauth2.errors import Response
from kong_plugins.ai_mcp_oauth2.gateway import Gateway, LetThrough

from .conftest import kong_config
from .fakes import FakeHttp, Gate, in_threads, join, make_key, ok, settle

JWKS = "https://as.example.com/jwks"


class FakeRequest:
    def __init__(
        self,
        headers: dict[str, list[str]] | None = None,
        path: str = "/mcp",
        method: str = "POST",
        origin: tuple[object, object, object] = ("https", "gw.example.com", 443),
        body: bytes | None = b"",
    ) -> None:
        self._headers = headers or {}
        self._body = body
        self.file_limits: list[int | None] = []
        self._path = path
        self._method = method
        self._origin = origin
        self.calls: list[str] = []
        self.logs: list[tuple[str, str]] = []

    def headers(self) -> Mapping[str, Sequence[str]]:
        self.calls.append("headers")
        return self._headers

    def path(self) -> str:
        self.calls.append("path")
        return self._path

    def method(self) -> str:
        self.calls.append("method")
        return self._method

    def forwarded_origin(self) -> tuple[object, object, object]:
        self.calls += ["forwarded_scheme", "forwarded_host", "forwarded_port"]
        return self._origin

    def log(self, level: str, message: str) -> None:
        self.calls.append("log")
        self.logs.append((level, message))

    def load_consumer(self, value: str, by_username: bool) -> Mapping[str, Any] | None:
        self.calls.append("load_consumer")
        return None  # no consumers (ConsumerRequest has some)

    def raw_body(self, file_limit: int | None) -> bytes | None:
        self.calls.append("raw_body")
        self.file_limits.append(file_limit)
        return self._body


def decide(request: FakeRequest, **config: Any) -> Response:
    decision = Gateway(kong_config(**config)).handle(request)
    assert isinstance(decision, Response)
    return decision


def body(response: Response) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/json"
    return json.loads(response.body)


MISSING = (401, "unauthorized", "Missing access token")
NOT_A_JWT = (401, "invalid_token", "The access token is not a JWT")
NO_CONSUMER = (403, "access_denied", "The access token does not map to a consumer of this gateway")


def refusal(response: Response) -> tuple[int, str, str]:
    """A refusal's status, error and error_description (which rule refused), once checked that the
    RFC 6750 challenge of a 400 or 401 names the same error and description, and that no other
    status challenges."""
    error, description = body(response)["error"], body(response)["error_description"]
    challenge = response.headers.get("WWW-Authenticate")
    if response.status == 401 and error == "unauthorized":
        assert challenge is not None and "error=" not in challenge, challenge
    elif response.status in (400, 401):
        assert challenge is not None
        assert challenge.startswith(f'Bearer error="{error}", error_description="{description}"'), challenge
    else:
        assert challenge is None, challenge
    return response.status, error, description


def test_missing_token_is_a_401_with_a_bare_challenge() -> None:
    request = FakeRequest()
    response = decide(request)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer resource_metadata="https://gw.example.com/mcp/.well-known/oauth-protected-resource"'
    )
    assert body(response) == {"error": "unauthorized", "error_description": "Missing access token"}
    assert len(request.calls) <= 5


def test_challenge_adds_scope_when_scopes_are_configured() -> None:
    response = decide(FakeRequest(), scopes_supported=["mcp:read", "mcp:write"])
    assert response.headers["WWW-Authenticate"].endswith(', scope="mcp:read mcp:write"')


def test_challenge_uses_metadata_endpoint_when_set() -> None:
    response = decide(
        FakeRequest(origin=("http", "localhost", 8000)), metadata_endpoint="/.well-known/oauth-protected-resource/mcp"
    )
    assert (
        'resource_metadata="http://localhost:8000/.well-known/oauth-protected-resource/mcp"'
        in (response.headers["WWW-Authenticate"])
    )


def test_a_token_that_is_not_a_jwt_is_refused_as_invalid_token() -> None:
    request = FakeRequest({"authorization": ["Bearer abc"]})
    response = decide(request)
    assert refusal(response) == NOT_A_JWT
    assert len(request.calls) <= 5


class AcceptAll:
    def verify(self, token: str) -> Mapping[str, object]:
        return {"sub": "alice"}


def test_an_accepted_token_is_proxied_with_authorization_stripped_unless_passthrough() -> None:
    request = FakeRequest({"authorization": ["Bearer abc"]})
    decision = Gateway(kong_config(), services=lambda _: (AcceptAll(), None)).handle(request)
    assert decision == LetThrough(
        set_headers={"X-Credential-Identifier": "alice"}, clear_headers=("Authorization",), credential={"id": "alice"}
    )
    assert request.calls == ["headers", "path"]
    kept = Gateway(kong_config(passthrough_credentials=True), services=lambda _: (AcceptAll(), None)).handle(request)
    assert kept == LetThrough(set_headers={"X-Credential-Identifier": "alice"}, credential={"id": "alice"})


def test_malformed_authorization_is_a_400_with_invalid_request() -> None:
    response = decide(FakeRequest({"authorization": ["Bearer a", "Bearer b"]}))
    assert refusal(response) == (400, "invalid_request", "Only one Authorization header is allowed")


@pytest.mark.parametrize(
    "path", ["/mcp/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_metadata_is_served_without_a_token_on_both_paths(path: str, method: str) -> None:
    request = FakeRequest(path=path, method=method)
    response = decide(request, scopes_supported=["mcp:read"])
    assert response.status == 200
    assert json.loads(response.body) == {
        "resource": "https://mcp.example.com/mcp", "authorization_servers": ["https://as.example.com"],
        "scopes_supported": ["mcp:read"], "bearer_methods_supported": ["header"],
    }  # fmt: skip
    assert request.calls == ["headers", "path", "method"]


@pytest.mark.parametrize(
    "path",
    [
        "/mcp/.well-known/oauth-protected-resource/",
        "/.well-known/oauth-protected-resource",
        "/MCP/.well-known/oauth-protected-resource",
    ],
)
def test_near_miss_metadata_paths_are_protected(path: str) -> None:
    assert refusal(decide(FakeRequest(path=path, method="GET"))) == MISSING


def test_other_methods_on_the_metadata_path_are_not_allowed_and_never_proxied() -> None:
    response = decide(
        FakeRequest(
            path="/mcp/.well-known/oauth-protected-resource", method="POST", headers={"authorization": ["Bearer abc"]}
        )
    )
    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert refusal(response) == (405, "method_not_allowed", "The protected resource metadata supports GET and HEAD")


def test_cors_preflight_on_the_metadata_path() -> None:
    response = decide(
        FakeRequest(
            path="/mcp/.well-known/oauth-protected-resource",
            method="OPTIONS",
            headers={"access-control-request-headers": ["mcp-protocol-version"]},
        )
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Headers"] == "mcp-protocol-version"


def test_oversized_bodies_are_refused_with_413_before_any_token_work() -> None:
    request = FakeRequest({"content-length": ["2049"], "authorization": ["Bearer abc"]})
    response = decide(request, max_request_body_size=2048)
    assert refusal(response) == (413, "request_too_large", "The request body is larger than this resource accepts")
    assert refusal(decide(FakeRequest({"content-length": ["2048"]}), max_request_body_size=2048)) == MISSING
    assert refusal(decide(FakeRequest({"content-length": ["10000000"]}), max_request_body_size=0)) == MISSING


def test_bodies_of_unknown_length_are_refused_while_a_limit_is_set() -> None:
    assert refusal(decide(FakeRequest({"transfer-encoding": ["chunked"]}))) == (
        411,
        "length_required",
        "A Content-Length is required for request bodies on this resource",
    )
    assert refusal(decide(FakeRequest({"transfer-encoding": ["chunked"]}), max_request_body_size=0)) == MISSING


@pytest.mark.parametrize("lengths", [["12", "13"], ["abc"], ["-1"]])
def test_invalid_content_length_is_a_400(lengths: list[str]) -> None:
    response = decide(FakeRequest({"content-length": lengths}))
    assert refusal(response) == (400, "invalid_request", "The Content-Length header is invalid")


def test_a_bad_config_answers_500_logs_the_field_and_asks_nothing_else() -> None:
    request = FakeRequest({"authorization": ["Bearer abc"]}, path="/mcp/.well-known/oauth-protected-resource")
    response = decide(request, claim_to_header=[{"claim": "sub", "header": "Authorization"}])
    assert response.status == 500
    assert body(response) == {
        "error": "server_error",
        "error_description": "The gateway's authorization plugin is misconfigured",
    }
    assert request.calls == ["log"]
    assert request.logs[0][0] == "err" and "claim_to_header[1].header" in request.logs[0][1]
    assert "WWW-Authenticate" not in response.headers


def test_a_config_that_breaks_the_reader_unforeseen_still_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only a ConfigError: any exception while reading the config is the misconfigured state
    (500 for every request, the log naming the exception's type only, never its message)."""
    from kong_plugins.ai_mcp_oauth2 import gateway

    def crash(raw: object) -> Any:
        raise RuntimeError("s3cr3t in the message")

    monkeypatch.setattr(gateway, "parse_config", crash)
    request = FakeRequest({"authorization": ["Bearer abc"]})
    response = decide(request)
    assert response.status == 500 and body(response)["error"] == "server_error"
    assert request.logs[0][0] == "err" and "config: could not be read (RuntimeError)" in request.logs[0][1]
    assert "s3cr3t" not in request.logs[0][1]


class Claims:
    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    def verify(self, token: str) -> Mapping[str, object]:
        return self.claims


def let_through_for(claims: dict[str, Any], headers: dict[str, list[str]] | None = None, **config: Any) -> LetThrough:
    request = FakeRequest({"authorization": ["Bearer abc"], **(headers or {})})
    decision = Gateway(kong_config(**config), services=lambda _: (Claims(claims), None)).handle(request)
    assert isinstance(decision, LetThrough)
    assert request.calls == ["headers", "path"]
    return decision


def test_claim_headers_are_set_from_the_validated_claims() -> None:
    decision = let_through_for(
        {"sub": "alice", "realm": {"roles": ["a", "b"]}},
        upstream_headers=[{"header": "X-User", "path": ["sub"]}, {"header": "X-Roles", "path": ["realm", "roles"]}],
    )
    assert decision.set_headers == {"X-User": "alice", "X-Roles": "a,b", "X-Credential-Identifier": "alice"}
    assert decision.clear_headers == ("Authorization",)


def test_client_copies_of_absent_claim_headers_are_removed_and_present_ones_overwritten() -> None:
    decision = let_through_for(
        {"sub": "alice"},
        {"x-user": ["mallory"], "x-email": ["spoofed@example.com"]},
        claim_to_header=[{"claim": "sub", "header": "X-User"}, {"claim": "email", "header": "X-Email"}],
    )
    assert decision.set_headers == {"X-User": "alice", "X-Credential-Identifier": "alice"}
    assert decision.clear_headers == ("X-Email", "Authorization")


def test_absent_claims_not_sent_by_the_client_cost_nothing() -> None:
    decision = let_through_for(
        {}, claim_to_header=[{"claim": "email", "header": "X-Email"}], passthrough_credentials=True
    )
    assert decision == LetThrough()  # no sub either: no credential to set


def test_unsafe_claim_values_are_not_sent_and_client_copies_removed() -> None:
    decision = let_through_for(
        {"sub": "a\r\nX-Admin: 1"}, {"x-user": ["x"]}, claim_to_header=[{"claim": "sub", "header": "X-User"}]
    )
    assert decision.set_headers == {} and "X-User" in decision.clear_headers


class Exchange:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def exchange(self, subject_token: str, actor_token: str | None) -> str:
        self.calls.append((subject_token, actor_token))
        return "upstream-token"


class ConsumerRequest(FakeRequest):
    def __init__(self, consumers: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consumers = consumers
        self.lookups: list[tuple[str, bool]] = []

    def load_consumer(self, value: str, by_username: bool) -> Mapping[str, Any] | None:
        self.calls.append("load_consumer")
        self.lookups.append((value, by_username))
        # Kong: by id first when the value is a UUID, then by username if allowed
        for consumer in self.consumers:
            if consumer["id"] == value:
                return consumer
        if by_username:
            return next((c for c in self.consumers if c["username"] == value), None)
        return None


ALICE = {"id": "8b1a9953-c461-4296-a8c4-6a4f8a2f7a11", "username": "alice", "custom_id": "c-1"}
BOB = {
    "id": "0b6ae7c1-5a3e-4b5e-9d8f-1c2b3a4d5e6f",
    "username": "8b1a9953-c461-4296-a8c4-6a4f8a2f7a11",
    "custom_id": None,
}


def decide_with(
    request: FakeRequest, token_claims: dict[str, Any], exchanger: Exchange | None = None, **config: Any
) -> Any:
    return Gateway(kong_config(**config), services=lambda _: (Claims(token_claims), exchanger)).handle(request)


HEADER_ACTOR_EXCHANGE = {
    "enabled": True,
    "token_endpoint": "https://as.example.com/token",
    "client_auth": "none",
    "request": {"actor_token_source": "header", "actor_token_header": "X-Actor-Token"},
}


def test_exchange_puts_the_exchanged_token_upstream_and_removes_the_actor_header() -> None:
    exchange = Exchange()
    request = FakeRequest({"authorization": ["Bearer abc"], "x-actor-token": ["actor-jwt"]})
    decision = decide_with(
        request, {"sub": "alice"}, exchange, token_exchange=HEADER_ACTOR_EXCHANGE, passthrough_credentials=True
    )
    assert exchange.calls == [("abc", "actor-jwt")]
    assert decision.set_headers == {"Authorization": "Bearer upstream-token", "X-Credential-Identifier": "alice"}
    assert decision.clear_headers == ("X-Actor-Token",)


@pytest.mark.parametrize("value", ["ab\udcffcd", "two words", "a\tb", "tök", "a,b"])
def test_a_malformed_actor_token_header_is_400_and_never_exchanged(value: str) -> None:
    """A non-UTF-8 byte (a lone surrogate here) raised UnicodeEncodeError in requests' form encoding: 500."""
    exchange = Exchange()
    request = FakeRequest({"authorization": ["Bearer abc"], "x-actor-token": [value]})
    response = decide_with(
        request, {"sub": "alice"}, exchange, token_exchange=HEADER_ACTOR_EXCHANGE, passthrough_credentials=True
    )
    assert isinstance(response, Response) and response.status == 400
    assert body(response) == {"error": "invalid_request", "error_description": "The actor token header is malformed"}
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer error="invalid_request", error_description="The actor token header is malformed"'
    )
    assert exchange.calls == []


def test_static_actor_token_comes_from_config() -> None:
    exchange = Exchange()
    te = {
        "enabled": True,
        "token_endpoint": "https://as.example.com/token",
        "client_auth": "none",
        "request": {"actor_token_source": "config", "actor_token": "static-actor"},
    }
    decide_with(
        FakeRequest({"authorization": ["Bearer abc"], "x-actor-token": ["ignored"]}),
        {},
        exchange,
        token_exchange=te,
        passthrough_credentials=True,
    )
    assert exchange.calls == [("abc", "static-actor")]


def test_consumer_found_by_username_is_authenticated_with_one_lookup() -> None:
    request = ConsumerRequest([ALICE], headers={"authorization": ["Bearer abc"]})
    decision = decide_with(request, {"sub": "alice"}, consumer_claim=["sub"])
    assert decision.consumer == ALICE and decision.credential == {"id": "alice"}
    assert request.lookups == [("alice", True)] and request.calls.count("load_consumer") == 1


def test_nested_consumer_claim_and_lookup_by_id() -> None:
    request = ConsumerRequest([ALICE], headers={"authorization": ["Bearer abc"]})
    decision = decide_with(
        request, {"sub": "x", "ext": {"kong_id": ALICE["id"]}}, consumer_claim=["ext", "kong_id"], consumer_by=["id"]
    )
    assert decision.consumer == ALICE and request.lookups == [(ALICE["id"], False)]


def test_a_uuid_username_does_not_match_another_consumers_id_when_only_usernames_are_allowed() -> None:
    request = ConsumerRequest([ALICE, BOB], headers={"authorization": ["Bearer abc"]})
    response = decide_with(request, {"sub": ALICE["id"]}, consumer_claim=["sub"], consumer_by=["username"])
    assert isinstance(response, Response) and refusal(response) == NO_CONSUMER


def test_unknown_consumer_is_403_unless_optional() -> None:
    request = ConsumerRequest([ALICE], headers={"authorization": ["Bearer abc"]})
    response = decide_with(request, {"sub": "mallory"}, consumer_claim=["sub"])
    assert isinstance(response, Response) and refusal(response) == NO_CONSUMER
    optional = decide_with(
        ConsumerRequest([ALICE], headers={"authorization": ["Bearer abc"]}),
        {"sub": "mallory"},
        consumer_claim=["sub"],
        consumer_optional=True,
    )
    assert optional.consumer is None and optional.credential == {"id": "mallory"}


def test_custom_id_only_is_never_looked_up() -> None:
    request = ConsumerRequest([ALICE], headers={"authorization": ["Bearer abc"]})
    response = decide_with(request, {"sub": "c-1"}, consumer_claim=["sub"], consumer_by=["custom_id"])
    assert isinstance(response, Response) and refusal(response) == NO_CONSUMER and request.lookups == []


def test_credential_claim_becomes_the_credential_id() -> None:
    decision = decide_with(
        FakeRequest({"authorization": ["Bearer abc"]}),
        {"client_id": "agent-7", "sub": "u"},
        credential_claim=["client_id"],
    )
    assert decision.credential == {"id": "agent-7"} and decision.consumer is None


def test_a_request_whose_headers_may_have_been_truncated_by_kong_is_refused() -> None:
    """get_headers() stops at 1000: a spoofed header or a second Authorization could hide past it."""
    headers = {f"x-filler-{i}": ["x"] for i in range(998)} | {"authorization": ["Bearer abc"]}
    response = decide(FakeRequest(headers | {"x-last": ["y"]}))
    assert refusal(response) == (400, "invalid_request", "The request has too many headers")
    assert refusal(decide(FakeRequest(headers))) == NOT_A_JWT  # 999 values: complete, an ordinary refusal


def test_kong_identity_headers_are_set_from_the_mapped_consumer_and_never_spoofed() -> None:
    request = ConsumerRequest(
        [ALICE],
        headers={
            "authorization": ["Bearer abc"],
            "x-consumer-id": ["forged"],
            "x-anonymous-consumer": ["true"],
            "x-consumer-groups": ["admins"],
        },
    )
    decision = decide_with(request, {"sub": "alice"}, consumer_claim=["sub"])
    assert decision.set_headers == {
        "X-Consumer-ID": ALICE["id"],
        "X-Consumer-Custom-ID": "c-1",
        "X-Consumer-Username": "alice",
        "X-Credential-Identifier": "alice",
    }
    assert set(decision.clear_headers) == {"Authorization", "X-Anonymous-Consumer", "X-Consumer-Groups"}
    spoofed = decide_with(FakeRequest({"authorization": ["Bearer abc"], "x-consumer-username": ["admin"]}), {})
    assert spoofed.clear_headers == ("Authorization", "X-Consumer-Username")


def test_a_new_instance_for_the_same_config_shares_no_fetch_or_cache_with_the_one_still_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A config change (or reload) builds a new Gateway while requests are in flight on the old
    one: the new one fetches its own keys at once (it neither waits on nor reuses the old one's
    fetch), and the old one's requests complete and its cache keeps serving."""
    key = make_key("RS256")
    clients: list[FakeHttp] = []
    gate = Gate(ok({"keys": [key.public_jwk()]}))

    def client(_: object) -> FakeHttp:
        clients.append(FakeHttp().on(JWKS, gate if not clients else ok({"keys": [key.public_jwk()]})))
        return clients[-1]

    monkeypatch.setattr(gateway, "HttpClient", client)

    def request(instance: Gateway, sub: str) -> object:
        return instance.handle(FakeRequest({"authorization": [f"Bearer {key.mint({'sub': sub})}"]}))

    config = kong_config(jwks_endpoint=JWKS)
    old = Gateway(config)
    threads, results = in_threads(20, lambda i: request(old, f"old-{i}"))
    assert gate.entered.wait(10)
    settle(threads)
    new = Gateway(config)
    assert isinstance(request(new, "new"), LetThrough)  # while the old instance's fetch is still held
    gate.open()
    join(threads)
    assert all(isinstance(r, LetThrough) for r in results), results
    assert isinstance(request(old, "old-later"), LetThrough) and isinstance(request(new, "new-later"), LetThrough)
    assert [c.count(JWKS) for c in clients] == [1, 1]


def test_underscore_variants_of_every_controlled_header_are_removed_by_the_name_the_client_sent() -> None:
    """With nginx's underscores_in_headers on, X_Email reaches the upstream, and WSGI reads it as X-Email."""
    spoofs = {
        "x_email": ["admin@example.com"],
        "x_user": ["root"],
        "x_credential_identifier": ["admin"],
        "x_consumer_id": ["forged"],
        "x_consumer_username": ["admin"],
        "x_anonymous_consumer": ["true"],
        "x_consumer_groups": ["admins"],
        "x_actor_token": ["other-actor"],
        "x-user": ["root"],
        "x_consumer-custom_id": ["c-9"],
    }
    request = ConsumerRequest([ALICE], headers={"authorization": ["Bearer abc"], "x-actor-token": ["actor"], **spoofs})
    exchange = Exchange()
    decision = decide_with(
        request,
        {"sub": "alice"},
        exchange,
        consumer_claim=["sub"],
        token_exchange=HEADER_ACTOR_EXCHANGE,
        passthrough_credentials=True,
        claim_to_header=[{"claim": "sub", "header": "X-User"}, {"claim": "email", "header": "X-Email"}],
    )
    assert decision.set_headers == {
        "X-User": "alice",
        "Authorization": "Bearer upstream-token",
        "X-Consumer-ID": ALICE["id"],
        "X-Consumer-Custom-ID": "c-1",
        "X-Consumer-Username": "alice",
        "X-Credential-Identifier": "alice",
    }
    assert decision.clear_headers == (
        "x_user",
        "x_email",
        "X-Actor-Token",
        "x_actor_token",
        "x_consumer_id",
        "x_consumer-custom_id",
        "x_consumer_username",
        "x_credential_identifier",
        "x_anonymous_consumer",
        "x_consumer_groups",
    )
    assert exchange.calls == [("abc", "actor")]  # the variant is removed, never read as the actor token


def test_a_configured_header_spelled_with_underscores_removes_the_dashed_client_copy() -> None:
    decision = let_through_for(
        {"sub": "alice"},
        {"x-user": ["root"], "x-user-id": ["root"], "x_user": ["root"]},
        claim_to_header=[{"claim": "sub", "header": "X_User"}],
        passthrough_credentials=True,
    )
    assert decision.set_headers == {"X_User": "alice", "X-Credential-Identifier": "alice"}
    assert decision.clear_headers == ("x-user",)  # x_user is replaced by set_headers; x-user-id is another header


def test_honest_requests_cost_no_clear_header_for_variants() -> None:
    decision = let_through_for(
        {"sub": "alice"},
        {"x-request-id": ["1"], "x_trace": ["2"], "user-agent": ["mcp"]},
        claim_to_header=[{"claim": "email", "header": "X-Email"}],
        passthrough_credentials=True,
    )
    assert decision == LetThrough(set_headers={"X-Credential-Identifier": "alice"}, credential={"id": "alice"})


def test_a_header_name_outside_ascii_never_matches_a_controlled_one() -> None:
    """The Kelvin sign lowercases to "k": Unicode case folding would let a non-ASCII name match X-Key."""
    decision = let_through_for(
        {"sub": "alice"},
        {"x-\u212aey": ["v"]},
        claim_to_header=[{"claim": "k", "header": "X-Key"}],
        passthrough_credentials=True,
    )
    assert decision.clear_headers == ()
