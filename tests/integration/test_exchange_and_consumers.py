"""Behaviour §9 and §10 end to end: RFC 8693 exchange at the mock server, Kong consumers and credentials."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.stack import StartKong, assert_refused, call, declarative, plugin_config, server_errors
from tests.harness.upstream import EchoUpstream

RESOURCE = "http://localhost:8000/mcp"
UPSTREAM_AUDIENCE = "https://upstream-mcp.internal"
ALICE_ID = "6a1e33a5-7d8e-4a43-9c1f-5f2b8d6e4a01"
CONSUMERS = [{"id": ALICE_ID, "username": "user-1", "custom_id": "c-1"}]


@pytest.fixture
def authz() -> Iterator[MockAuthorizationServer]:
    with MockAuthorizationServer(resource=RESOURCE) as server:
        server.add_client("kong", "client_secret_basic", secret="kong-secret")
        server.add_client("exchanger", "client_secret_basic", secret="exchanger-secret")
        yield server


def exchange_config(authz: MockAuthorizationServer, **request: Any) -> dict[str, Any]:
    """Shaped like Kong's token-exchange example: introspection, passthrough, a header actor token."""
    return plugin_config(
        authorization_servers=[authz.issuer],
        introspection_endpoint=authz.introspection_endpoint, client_id="kong", client_secret="kong-secret",
        passthrough_credentials=True,
        token_exchange={
            "enabled": True, "token_endpoint": authz.token_endpoint, "client_auth": "client_secret_basic",
            "client_id": "exchanger", "client_secret": "exchanger-secret",
            "request": {"actor_token_source": "header", "actor_token_header": "X-Actor-Token",
                        "audience": [UPSTREAM_AUDIENCE], "scopes": ["mcp:read"], **request},
            "cache": {"enabled": True, "ttl": 3600},
        },
    )  # fmt: skip


def test_exchange_sends_exactly_the_rfc_8693_fields_and_forwards_the_exchanged_token(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = start_kong(declarative(exchange_config(authz)))
    subject = authz.issue_opaque({"sub": "user-1"})
    actor = authz.mint({"sub": "agent-7"}, alg="ES256")
    response = call(kong, subject, {"X-Actor-Token": actor}, http=http)
    assert response.status_code == 200, response.text
    exchange = [r for r in authz.requests if r.endpoint == "token"][-1]
    assert exchange.auth_method_used == "client_secret_basic" and exchange.client_id_authenticated == "exchanger"
    assert exchange.form == {
        "grant_type": ["urn:ietf:params:oauth:grant-type:token-exchange"],
        "subject_token": [subject], "subject_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
        "requested_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
        "actor_token": [actor], "actor_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
        "audience": [UPSTREAM_AUDIENCE], "scope": ["mcp:read"],
    }  # fmt: skip
    forwarded = upstream.last["headers"]
    upstream_token = forwarded["authorization"][0].removeprefix("Bearer ")
    assert upstream_token != subject
    issued = authz.validate_token(upstream_token)
    assert issued is not None and issued["aud"] == UPSTREAM_AUDIENCE and issued["act"] == {"sub": "agent-7"}
    assert "x-actor-token" not in forwarded


def test_a_non_utf8_byte_in_the_actor_token_header_is_400_never_exchanged_or_proxied(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    """The byte reached requests as a lone surrogate and raised UnicodeEncodeError (500, an ERROR line)."""
    kong = start_kong(declarative(exchange_config(authz)))
    before = len(upstream.requests)
    response = call(
        kong, authz.issue_opaque(), {"X-Actor-Token": "actor\xfftoken"}, http=http
    )  # raw byte 0xFF on the wire
    assert_refused(response, 400, "The actor token header is malformed", kong=kong, upstream=upstream, before=before)
    assert kong.last.round_trips <= 5
    assert authz.count("token") == 0
    assert server_errors(kong, ("unexpected", "Error")) == []


def test_a_cached_exchange_costs_at_most_five_round_trips(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    kong = start_kong(declarative(exchange_config(authz)))
    subject = authz.issue_opaque()
    for _ in range(3):
        assert call(kong, subject, http=http).status_code == 200
    assert authz.count("token") == 1 and authz.count("introspection") == 1
    assert kong.last.round_trips <= 5, [c.method for c in kong.last.pdk_calls]


def test_disabled_exchange_cache_exchanges_every_time(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    config = exchange_config(authz)
    config["token_exchange"]["cache"] = {"enabled": False}
    kong = start_kong(declarative(config))
    subject = authz.issue_opaque()
    call(kong, subject, http=http)
    call(kong, subject, http=http)
    assert authz.count("token") == 2


@pytest.mark.parametrize("refusal,status,description", [
    ("invalid_grant", 401, "The access token could not be exchanged for the upstream"),
    ("invalid_target", 401, "The access token could not be exchanged for the upstream"),
    ("invalid_client", 503, "The token exchange endpoint refused the gateway or failed"),
])  # fmt: skip
def test_exchange_refusals_map_to_401_or_503(
    start_kong: StartKong,
    authz: MockAuthorizationServer,
    http: requests.Session,
    upstream: EchoUpstream,
    refusal: str,
    status: int,
    description: str,
) -> None:
    kong = start_kong(declarative(exchange_config(authz)))
    authz.exchange_refuse = refusal
    before = len(upstream.requests)
    response = call(kong, authz.issue_opaque(), http=http)
    assert_refused(response, status, description, kong=kong, upstream=upstream, before=before)
    assert authz.count("token") == 1
    assert kong.last.round_trips <= 5


@pytest.mark.parametrize("mode,description", [
    ("500", "The token exchange endpoint refused the gateway or failed"),
    ("drop", "The token exchange endpoint could not be reached"),
    ("garbage", "The token exchange answer is not a JSON object"),
    ("401", "The token exchange endpoint refused the gateway or failed"),
])  # fmt: skip
def test_exchange_endpoint_failures_are_503(
    start_kong: StartKong,
    authz: MockAuthorizationServer,
    http: requests.Session,
    upstream: EchoUpstream,
    mode: str,
    description: str,
) -> None:
    kong = start_kong(declarative(exchange_config(authz)))
    authz.fault("token", mode)
    before = len(upstream.requests)
    response = call(kong, authz.issue_opaque(), http=http)
    assert_refused(response, 503, description, kong=kong, upstream=upstream, before=before)
    assert kong.last.round_trips <= 5


@pytest.mark.parametrize("answer,description", [
    ({"issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
     "The token exchange answer's issued_token_type is not the requested type"),
    ({"issued_token_type": "urn:ietf:params:oauth:token-type:id_token", "token_type": "N_A"},
     "The token exchange answer's issued_token_type is not the requested type"),
    ({"issued_token_type": None}, "The token exchange answer's issued_token_type is not the requested type"),
    ({"token_type": "N_A"}, "The token exchange answer's token_type is not Bearer"),
    ({"token_type": None}, "The token exchange answer has no token_type"),
])  # fmt: skip
def test_an_exchanged_token_of_another_type_is_503_and_never_proxied(
    start_kong: StartKong,
    authz: MockAuthorizationServer,
    http: requests.Session,
    upstream: EchoUpstream,
    answer: dict[str, Any],
    description: str,
) -> None:
    """RFC 8693 §2.2.1: a refresh or ID token from the exchange endpoint must never go upstream as Bearer."""
    kong = start_kong(declarative(exchange_config(authz)))
    authz.exchange_answer_extra = answer
    before = len(upstream.requests)
    response = call(kong, authz.issue_opaque(), http=http)
    assert_refused(response, 503, description, kong=kong, upstream=upstream, before=before)
    assert authz.count("token") == 1


def test_a_requested_jwt_issued_as_a_bearer_jwt_is_forwarded(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = start_kong(declarative(exchange_config(authz, requested_token_type="urn:ietf:params:oauth:token-type:jwt")))
    assert call(kong, authz.issue_opaque(), http=http).status_code == 200
    upstream_token = upstream.last["headers"]["authorization"][0].removeprefix("Bearer ")
    assert authz.validate_token(upstream_token) is not None
    exchange = [r for r in authz.requests if r.endpoint == "token"][-1]
    assert exchange.form["requested_token_type"] == ["urn:ietf:params:oauth:token-type:jwt"]


def test_a_400_digit_expires_in_is_503_not_an_internal_error(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    """Valid JSON, no float can hold it: the cache's lifetime arithmetic raised OverflowError (500, ERROR line)."""
    kong = start_kong(declarative(exchange_config(authz)))
    authz.exchange_expires_in = 10**400
    before = len(upstream.requests)
    response = call(kong, authz.issue_opaque(), http=http)
    description = "The token exchange answer's expires_in is not a number"
    assert_refused(response, 503, description, kong=kong, upstream=upstream, before=before)
    assert authz.count("token") == 1
    assert server_errors(kong, ("unexpected", "Error")) == []


def test_a_consumer_named_in_a_claim_is_authenticated_in_kong(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    config = plugin_config(authorization_servers=[authz.issuer], consumer_claim=["sub"], consumer_by=["username"])
    kong = start_kong(declarative(config, consumers=CONSUMERS))
    assert call(kong, authz.mint({"sub": "user-1"}), http=http).status_code == 200
    methods = [c.method for c in kong.last.pdk_calls]
    assert methods.count("kong.client.load_consumer") == 1
    authenticate = [c for c in kong.last.pdk_calls if c.method == "kong.client.authenticate"][0]
    assert authenticate.args[0]["id"] == ALICE_ID and authenticate.args[1] == {"id": "user-1"}
    assert kong.last.round_trips <= 6


def test_an_unknown_consumer_is_403_unless_optional(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    config = plugin_config(authorization_servers=[authz.issuer], consumer_claim=["sub"])
    kong = start_kong(declarative(config, consumers=CONSUMERS))
    before = len(upstream.requests)
    response = call(kong, authz.mint({"sub": "mallory"}), http=http)
    description = "The access token does not map to a consumer of this gateway"
    assert_refused(response, 403, description, kong=kong, upstream=upstream, before=before)
    assert kong.last.round_trips <= 6  # with the consumer lookup
    optional = start_kong(declarative({**config, "consumer_optional": True}, consumers=CONSUMERS))
    assert call(optional, authz.mint({"sub": "mallory"}), http=http).status_code == 200
    authenticate = [c for c in optional.last.pdk_calls if c.method == "kong.client.authenticate"][0]
    assert authenticate.args == [None, {"id": "mallory"}]


def test_custom_id_lookup_is_reported_once_at_instance_start(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    config = plugin_config(authorization_servers=[authz.issuer], consumer_claim=["sub"], consumer_optional=True)
    kong = start_kong(declarative(config, consumers=CONSUMERS))
    call(kong, authz.mint(), http=http)
    call(kong, authz.mint(), http=http)
    lines = [line for line in kong.server_output if "no lookup by custom_id" in line]
    assert len(lines) == 1, lines


def test_kong_identity_headers_reach_the_upstream_and_client_copies_do_not(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    config = plugin_config(authorization_servers=[authz.issuer], consumer_claim=["sub"], consumer_by=["username"])
    kong = start_kong(declarative(config, consumers=CONSUMERS))
    spoofed = {"X-Consumer-Username": "admin", "X-Consumer-ID": "forged", "X-Anonymous-Consumer": "true"}
    response = call(kong, authz.mint({"sub": "user-1"}), spoofed, http=http)
    assert response.status_code == 200
    received = upstream.last["headers"]
    assert received["x-consumer-username"] == ["user-1"] and received["x-consumer-id"] == [ALICE_ID]
    assert received["x-consumer-custom-id"] == ["c-1"] and received["x-credential-identifier"] == ["user-1"]
    assert "x-anonymous-consumer" not in received
    # six round trips, plus one clear_header for the spoofed header no value replaces: spoofing costs the spoofer
    assert kong.last.round_trips == 7
