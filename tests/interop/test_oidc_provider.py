"""The plugin against a real, certified OpenID provider (oidc-provider, see conftest.py), on loopback.

Every test asks the provider first (its token, introspection and exchange answers) and only then
the plugin, so a failure says which side broke: "provider: …" or "plugin: …".
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests

from tests.harness.kong_standin import KongStandIn
from tests.harness.stack import StartKong, assert_refused, call, declarative, plugin_config
from tests.harness.upstream import EchoUpstream

from .conftest import (
    ACCESS_TOKEN_TYPE,
    OIDC_PROVIDER_VERSION,
    OTHER_RESOURCE,
    PROVIDER_DIR,
    RESOURCE,
    SHORT_TTL,
    TOKEN_EXCHANGE,
    UPSTREAM_AUDIENCE,
    OidcProvider,
    StartProvider,
    private_jwks,
    secret,
)

CLAIM_HEADERS = [
    {"claim": "sub", "header": "X-User"},
    {"claim": "client_id", "header": "X-Client-Id"},
    {"claim": "scope", "header": "X-Scope"},
]


def jwt_config(provider: OidcProvider, **config: Any) -> dict[str, Any]:
    """Keys through discovery only: no jwks_endpoint, no metadata_discovery_endpoint."""
    return plugin_config(resource=RESOURCE, authorization_servers=[provider.issuer], **config)


def introspection_config(provider: OidcProvider, **config: Any) -> dict[str, Any]:
    return jwt_config(
        provider,
        introspection_endpoint=provider.introspection_endpoint,
        client_id="gateway",
        client_secret=secret("gateway"),
        **config,
    )


def exchange_config(provider: OidcProvider, validation: str, exchanger: str = "exchanger") -> dict[str, Any]:
    config = jwt_config if validation == "jwt" else introspection_config
    return config(provider, passthrough_credentials=True, claim_to_header=CLAIM_HEADERS[:1], token_exchange={
        "enabled": True, "token_endpoint": provider.token_endpoint, "client_auth": "client_secret_basic",
        "client_id": exchanger, "client_secret": secret("exchanger"),
        "request": {"actor_token_source": "header", "actor_token_header": "X-Actor-Token",
                    "audience": [UPSTREAM_AUDIENCE], "scopes": ["mcp:tools"]},
    })  # fmt: skip


def assert_accepted(kong: KongStandIn, response: requests.Response, upstream: EchoUpstream, before: int) -> None:
    assert response.status_code == 200, (
        f"plugin: refused a token the provider issued: {response.status_code} "
        f"{response.headers.get('WWW-Authenticate')} {response.text}"
    )
    assert kong.last.proxied and len(upstream.requests) == before + 1, "plugin: the request did not reach the upstream"


NOT_EXCHANGED = "The access token could not be exchanged for the upstream"
AUDIENCE = "The access token is not intended for this resource"
INACTIVE = "The access token is not active"


def unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def test_the_pinned_oidc_provider_version_is_the_one_installed() -> None:
    import json

    manifest = json.loads((PROVIDER_DIR / "package.json").read_text())
    lock = json.loads((PROVIDER_DIR / "package-lock.json").read_text())
    assert manifest["dependencies"]["oidc-provider"] == OIDC_PROVIDER_VERSION
    assert lock["packages"]["node_modules/oidc-provider"]["version"] == OIDC_PROVIDER_VERSION


# 1. JWT access tokens, keys found through the provider's discovery document -----------------------


@pytest.mark.parametrize(("client_id", "alg"), [("mcp-client", "RS256"), ("mcp-client-es", "ES256")])
def test_jwt_access_tokens_are_validated_through_discovery_and_reach_the_upstream_with_claim_headers(
    start_kong: StartKong,
    oidc: OidcProvider,
    http: requests.Session,
    upstream: EchoUpstream,
    client_id: str,
    alg: str,
) -> None:
    answer = oidc.token(client_id)
    token = answer["access_token"]
    header = jwt.get_unverified_header(token)
    assert (header["typ"], header["alg"]) == ("at+jwt", alg), f"provider: JWT access token header {header}"
    claims = oidc.verify(token, RESOURCE)
    assert claims["aud"] == RESOURCE and claims["sub"] == client_id, f"provider: claims {claims}"

    kong = start_kong(declarative(jwt_config(oidc, claim_to_header=CLAIM_HEADERS)))
    before = len(upstream.requests)
    assert_accepted(kong, call(kong, token, http=http), upstream, before)
    received = upstream.last["headers"]
    assert received["x-user"] == [client_id] and received["x-client-id"] == [client_id], f"plugin: headers {received}"
    assert received["x-scope"] == ["mcp:tools"], f"plugin: headers {received}"
    assert "authorization" not in received, "plugin: the token was forwarded without passthrough_credentials"


# 2. Opaque access tokens, RFC 7662 introspection at the provider ---------------------------------


def test_opaque_tokens_are_validated_by_introspection_at_the_provider(
    start_kong: StartKong, oidc: OidcProvider, http: requests.Session, upstream: EchoUpstream
) -> None:
    token = oidc.access_token("opaque-client")
    assert token.count(".") == 0, "provider: opaque-client got a structured token"
    introspected = oidc.introspect(token)
    assert introspected["active"] is True and introspected["aud"] == RESOURCE, f"provider: introspection {introspected}"
    assert introspected["iss"] == oidc.issuer and introspected["client_id"] == "opaque-client"

    kong = start_kong(declarative(introspection_config(oidc, claim_to_header=CLAIM_HEADERS)))
    before = len(upstream.requests)
    assert_accepted(kong, call(kong, token, http=http), upstream, before)
    received = upstream.last["headers"]
    # an introspection answer for a client-credentials token has no sub (RFC 7662: optional)
    assert received["x-client-id"] == ["opaque-client"] and "x-user" not in received, f"plugin: headers {received}"
    assert received["x-scope"] == ["mcp:tools"], f"plugin: headers {received}"


# 3. RFC 8693 token exchange at the provider ---------------------------------------------------------


@pytest.mark.parametrize("validation", ["jwt", "introspection"])
def test_tokens_are_exchanged_at_the_provider_and_the_upstream_gets_the_exchanged_token(
    start_kong: StartKong, oidc: OidcProvider, http: requests.Session, upstream: EchoUpstream, validation: str
) -> None:
    subject_client = "mcp-client" if validation == "jwt" else "opaque-client"
    subject = oidc.access_token(subject_client)
    actor = oidc.access_token("mcp-client-es")
    answer = oidc.exchange("exchanger", subject, actor)
    assert answer["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token", f"provider: {answer}"
    assert answer["token_type"] == "Bearer", f"provider: {answer}"
    direct = answer["access_token"]
    claims = oidc.verify(direct, UPSTREAM_AUDIENCE)
    assert claims["act"] == {"sub": "mcp-client-es"} and claims["sub"] == subject_client, f"provider: {claims}"

    kong = start_kong(declarative(exchange_config(oidc, validation)))
    before = len(upstream.requests)
    assert_accepted(kong, call(kong, subject, {"X-Actor-Token": actor}, http=http), upstream, before)
    received = upstream.last["headers"]
    assert "x-actor-token" not in received, "plugin: the actor token reached the upstream"
    # claim headers come from the inbound token; an introspected client-credentials token has no sub
    expected_user = [subject_client] if validation == "jwt" else None
    assert received.get("x-user") == expected_user, f"plugin: headers {received}"
    forwarded = received["authorization"][0].removeprefix("Bearer ")
    assert forwarded not in (subject, actor, direct), "plugin: the upstream did not get a freshly exchanged token"
    exchanged = oidc.verify(forwarded, UPSTREAM_AUDIENCE)  # signature, iss, aud, exp with PyJWT
    assert exchanged["aud"] == UPSTREAM_AUDIENCE and exchanged["act"] == {"sub": "mcp-client-es"}, exchanged
    assert exchanged["sub"] == subject_client and exchanged["client_id"] == "exchanger", exchanged

    # the exchange is cached: the same subject and actor again are not exchanged again
    assert_accepted(kong, call(kong, subject, {"X-Actor-Token": actor}, http=http), upstream, before + 1)
    assert upstream.last["headers"]["authorization"] == [f"Bearer {forwarded}"]


def test_the_providers_token_exchange_grant_refuses_per_rfc_8693(oidc: OidcProvider) -> None:
    """Our grant handler in server.mjs, on its own (RFC 8693 §2.2.2): no plugin involved."""
    subject, actor = oidc.access_token("mcp-client"), oidc.access_token("mcp-client-es")
    revoked = oidc.access_token("opaque-client")
    oidc.revoke(revoked, "opaque-client")
    head, body, signature = subject.split(".")
    tampered = f"{head}.{body}.{signature[::-1]}"
    base = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": UPSTREAM_AUDIENCE,
    }
    cases: dict[str, tuple[dict[str, str | None], str]] = {
        "no subject_token": ({"subject_token": None}, "invalid_request"),
        "no subject_token_type": ({"subject_token_type": None}, "invalid_request"),
        "unsupported subject_token_type": ({"subject_token_type": "urn:x:unknown"}, "invalid_request"),
        "actor_token without its type": ({"actor_token": actor}, "invalid_request"),
        "actor_token_type without a token": ({"actor_token_type": ACCESS_TOKEN_TYPE}, "invalid_request"),
        "unsupported requested_token_type": ({"requested_token_type": "urn:x:unknown"}, "invalid_request"),
        "subject never issued": ({"subject_token": "x" * 43}, "invalid_grant"),
        "subject revoked": ({"subject_token": revoked}, "invalid_grant"),
        "subject signature tampered": ({"subject_token": tampered}, "invalid_grant"),
        "actor never issued": ({"actor_token": "x" * 43, "actor_token_type": ACCESS_TOKEN_TYPE}, "invalid_grant"),
        "unknown audience": ({"audience": "https://unknown.example"}, "invalid_target"),
        "no audience or resource": ({"audience": None}, "invalid_target"),
    }
    for name, (change, error) in cases.items():
        status, answer = oidc.post_token("exchanger", base | change)
        assert (status, answer.get("error")) == (400, error), f"provider: {name}: {status} {answer}"
    status, answer = oidc.post_token("exchanger", base, client_secret="wrong")
    assert (status, answer.get("error")) == (401, "invalid_client"), f"provider: wrong secret: {status} {answer}"
    status, answer = oidc.post_token("mcp-client", base)
    assert status == 400 and "access_token" not in answer, f"provider: a client without the grant: {answer}"
    status, answer = oidc.post_token("exchanger", base | {"resource": RESOURCE, "audience": None})
    assert status == 200 and oidc.verify(answer["access_token"], RESOURCE)["sub"] == "mcp-client", answer
    assert "act" not in unverified(answer["access_token"]), "provider: act without an actor token"
    jwt_type = "urn:ietf:params:oauth:token-type:jwt"
    status, answer = oidc.post_token("exchanger", base | {"requested_token_type": jwt_type})
    assert status == 200 and (answer["issued_token_type"], answer["token_type"]) == (jwt_type, "Bearer"), answer


def test_an_actor_token_the_provider_refuses_is_401_and_wrong_exchanger_credentials_are_503(
    start_kong: StartKong, oidc: OidcProvider, http: requests.Session, upstream: EchoUpstream
) -> None:
    subject = oidc.access_token("mcp-client")
    refused = oidc.exchange("exchanger", subject, "not-a-token-this-provider-issued", expect=400)
    assert refused["error"] == "invalid_grant", f"provider: {refused}"
    kong = start_kong(declarative(exchange_config(oidc, "jwt")))
    before = len(upstream.requests)
    response = call(kong, subject, {"X-Actor-Token": "not-a-token-this-provider-issued"}, http=http)
    assert_refused(response, 401, NOT_EXCHANGED, kong=kong, upstream=upstream, before=before)

    config = exchange_config(oidc, "jwt")
    config["token_exchange"]["client_secret"] = "wrong-secret"
    kong = start_kong(declarative(config))
    response = call(kong, subject, {"X-Actor-Token": oidc.access_token("mcp-client-es")}, http=http)
    description = "The token exchange endpoint refused the gateway or failed"
    assert_refused(response, 503, description, kong=kong, upstream=upstream, before=before)


# 4. Key rotation at the provider, picked up by the running plugin server -------------------------


def test_a_provider_key_rotation_is_picked_up_without_restarting_the_plugin_server(
    start_kong: StartKong, start_provider: StartProvider, http: requests.Session, upstream: EchoUpstream
) -> None:
    old_keys, new_keys = private_jwks("old"), private_jwks("new")
    provider = start_provider(old_keys)
    old_token = provider.access_token("mcp-client")
    assert jwt.get_unverified_header(old_token)["kid"] == "old-rs256", "provider: not signing with the given keys"

    kong = start_kong(declarative(jwt_config(provider)))
    process = kong.servers["ai-mcp-oauth2"].process
    assert process is not None
    plugin_server = process.pid
    before = len(upstream.requests)
    assert_accepted(kong, call(kong, old_token, http=http), upstream, before)
    fetched = time.monotonic()  # the plugin fetched the key set for that first request, before this

    provider.restart(new_keys)
    new_token = provider.access_token("mcp-client")
    assert jwt.get_unverified_header(new_token)["kid"] == "new-rs256", "provider: not signing with the rotated keys"
    assert {key.key_id for key in provider.jwks().keys} == {"new-rs256", "new-es256"}, "provider: JWKS not rotated"
    provider.verify(new_token, RESOURCE)

    # An unknown kid refetches the key set at most once per 10 s (from the last fetch): wait that out.
    time.sleep(max(0.0, fetched + 10.2 - time.monotonic()))
    assert_accepted(kong, call(kong, new_token, http=http), upstream, before + 1)
    es_token = provider.access_token("mcp-client-es")
    assert_accepted(kong, call(kong, es_token, http=http), upstream, before + 2)
    assert process.pid == plugin_server, "plugin: the plugin server restarted"


# 5. Refusals with real tokens ------------------------------------------------------------------


def test_a_token_for_another_resource_is_refused(
    start_kong: StartKong, oidc: OidcProvider, http: requests.Session, upstream: EchoUpstream
) -> None:
    jwt_token = oidc.access_token("mcp-client", resource=OTHER_RESOURCE)
    assert oidc.verify(jwt_token, OTHER_RESOURCE)["aud"] == OTHER_RESOURCE, "provider: wrong aud"
    opaque = oidc.access_token("opaque-client", resource=OTHER_RESOURCE)
    introspected = oidc.introspect(opaque)
    assert introspected["active"] is True and introspected["aud"] == OTHER_RESOURCE, f"provider: {introspected}"

    before = len(upstream.requests)
    kong = start_kong(declarative(jwt_config(oidc)))
    assert_refused(call(kong, jwt_token, http=http), 401, AUDIENCE, kong=kong, upstream=upstream, before=before)
    kong = start_kong(declarative(introspection_config(oidc)))
    assert_refused(call(kong, opaque, http=http), 401, AUDIENCE, kong=kong, upstream=upstream, before=before)


def test_an_expired_jwt_is_refused_after_having_been_accepted(
    start_kong: StartKong, oidc: OidcProvider, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = start_kong(declarative(jwt_config(oidc)))
    token = oidc.access_token("short-client")
    claims = unverified(token)
    assert claims["exp"] - claims["iat"] == SHORT_TTL, f"provider: short-client token lives {claims}"
    before = len(upstream.requests)
    assert_accepted(kong, call(kong, token, http=http), upstream, before)  # also cached until its exp
    time.sleep(max(0.0, claims["exp"] + 1.1 - time.time()))
    expired = "The access token has expired"
    assert_refused(call(kong, token, http=http), 401, expired, kong=kong, upstream=upstream, before=before + 1)


def test_revoked_and_unknown_opaque_tokens_are_refused(
    start_kong: StartKong, oidc: OidcProvider, http: requests.Session, upstream: EchoUpstream
) -> None:
    revoked = oidc.access_token("opaque-client")
    assert oidc.introspect(revoked)["active"] is True, "provider: fresh token not active"
    oidc.revoke(revoked, "opaque-client")
    assert oidc.introspect(revoked) == {"active": False}, "provider: revoked token still active"
    unknown = "x" * 43
    assert oidc.introspect(unknown) == {"active": False}, "provider: unknown token active"

    kong = start_kong(declarative(introspection_config(oidc)))
    before = len(upstream.requests)
    assert_refused(call(kong, revoked, http=http), 401, INACTIVE, kong=kong, upstream=upstream, before=before)
    assert_refused(call(kong, unknown, http=http), 401, INACTIVE, kong=kong, upstream=upstream, before=before)


def test_with_introspection_configured_a_jwt_or_an_opaque_token_without_audience_is_refused(
    start_kong: StartKong, oidc: OidcProvider, http: requests.Session, upstream: EchoUpstream
) -> None:
    """Kong's rule: with introspection_endpoint set every token is introspected. oidc-provider does
    not store its JWT access tokens, so it answers them inactive; and an opaque token requested
    without a resource indicator has no aud, which the plugin refuses (RFC 8707)."""
    jwt_token = oidc.access_token("mcp-client")
    assert oidc.introspect(jwt_token) == {"active": False}, "provider: introspected its own JWT access token"
    unbound = oidc.access_token("opaque-client", resource=None)
    introspected = oidc.introspect(unbound)
    assert introspected["active"] is True and "aud" not in introspected, f"provider: {introspected}"

    kong = start_kong(declarative(introspection_config(oidc)))
    before = len(upstream.requests)
    assert_refused(call(kong, jwt_token, http=http), 401, INACTIVE, kong=kong, upstream=upstream, before=before)
    assert_refused(call(kong, unbound, http=http), 401, AUDIENCE, kong=kong, upstream=upstream, before=before)


@pytest.mark.parametrize("validation,description", [
    ("jwt", "The authorization server's metadata could not be obtained"),
    ("introspection", "The authorization server could not be reached"),
])  # fmt: skip
def test_the_provider_down_is_503(
    start_kong: StartKong,
    start_provider: StartProvider,
    http: requests.Session,
    upstream: EchoUpstream,
    validation: str,
    description: str,
) -> None:
    provider = start_provider()
    if validation == "jwt":
        token, config = provider.access_token("mcp-client"), jwt_config(provider, timeout=2000)
    else:
        token, config = provider.access_token("opaque-client"), introspection_config(provider, timeout=2000)
    kong = start_kong(declarative(config))
    provider.stop()
    before = len(upstream.requests)
    assert_refused(call(kong, token, http=http), 503, description, kong=kong, upstream=upstream, before=before)
