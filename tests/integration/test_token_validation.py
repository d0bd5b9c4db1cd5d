"""Behaviour §4–§8 end to end: tokens from a real (mock) authorization server over real HTTP,
the real plugin server behind the Kong stand-in, and what the upstream MCP server receives.
"""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
import time
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from tests.harness.disk import files_containing
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.stack import StartKong, assert_refused, call, declarative, plugin_config, server_errors
from tests.harness.upstream import EchoUpstream

RESOURCE = "http://localhost:8000/mcp"
KONG_ADDED = {
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-path",
    "x-real-ip",
    "x-kong-request-id",
    "via",
    "host",
    "connection",
    "content-length",
    "user-agent",
    "accept-encoding",
    "accept",
    "content-type",
    "x-forwarded-prefix",
}


def jwt_kong(start_kong: StartKong, authz: MockAuthorizationServer, **config: Any) -> KongStandIn:
    return start_kong(declarative(plugin_config(authorization_servers=[authz.issuer], **config)))


def introspection_kong(start_kong: StartKong, authz: MockAuthorizationServer, **config: Any) -> KongStandIn:
    options = {
        "introspection_endpoint": authz.introspection_endpoint,
        "client_id": "kong",
        "client_secret": "kong-secret",
        **config,
    }
    return jwt_kong(start_kong, authz, **options)


def refused(
    kong: KongStandIn,
    response: requests.Response,
    upstream: EchoUpstream,
    before: int,
    description: str,
    status: int = 401,
) -> None:
    """Refused by the rule of ``description``, and neither proxied nor seen by the upstream."""
    assert_refused(response, status, description, kong=kong, upstream=upstream, before=before)


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_valid_jwts_reach_the_upstream_with_claim_headers_and_nothing_else(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream, alg: str
) -> None:
    kong = jwt_kong(start_kong, authz, upstream_headers=[
        {"header": "X-User-Id", "path": ["sub"]}, {"header": "X-Roles", "path": ["realm_access", "roles"]},
        {"header": "X-Email", "path": ["email"]},
    ])  # fmt: skip
    token = authz.mint({"realm_access": {"roles": ["reader", "writer"]}}, alg=alg)
    response = call(kong, token, http=http)
    assert response.status_code == 200, response.text
    received = upstream.last["headers"]
    assert received["x-user-id"] == ["user-1"] and received["x-roles"] == ["reader,writer"]
    assert "authorization" not in received and "x-email" not in received
    assert set(received) - KONG_ADDED == {"x-user-id", "x-roles", "x-credential-identifier"}
    assert received["x-credential-identifier"] == ["user-1"]  # Kong's credential, like its auth plugins
    assert kong.last.round_trips <= 5


def test_a_repeated_token_is_not_validated_again_and_costs_at_most_five_round_trips(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = jwt_kong(start_kong, authz, claim_to_header=[{"claim": "sub", "header": "X-User"}])
    token = authz.mint()
    for _ in range(3):
        assert call(kong, token, http=http).status_code == 200
    assert authz.count("jwks") == 1 and authz.count("metadata") == 1
    assert [c.method for c in kong.last.pdk_calls] == [
        "kong.request.get_headers",
        "kong.request.get_path",
        "kong.service.request.set_headers",
        "kong.service.request.clear_header",
        "kong.client.authenticate",
    ]
    assert kong.last.round_trips == 5


def test_opaque_tokens_are_introspected_and_their_claims_forwarded(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = introspection_kong(
        start_kong,
        authz,
        claim_to_header=[{"claim": "sub", "header": "X-User"}, {"claim": "scope", "header": "X-Scope"}],
    )
    token = authz.issue_opaque({"sub": "opaque-user"})
    assert call(kong, token, http=http).status_code == 200
    assert upstream.last["headers"]["x-user"] == ["opaque-user"]
    assert upstream.last["headers"]["x-scope"] == ["mcp:tools"]
    recorded = [r for r in authz.requests if r.endpoint == "introspection"][-1]
    assert recorded.form["token"] == [token] and recorded.form["token_type_hint"] == ["access_token"]
    assert recorded.client_id_authenticated == "kong" and recorded.auth_method_used == "client_secret_basic"
    call(kong, token, http=http)
    assert authz.count("introspection") == 1  # cached


def test_revoked_and_unknown_opaque_tokens_are_refused(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = introspection_kong(start_kong, authz)
    before = len(upstream.requests)
    inactive = "The access token is not active"
    refused(kong, call(kong, authz.issue_opaque(active=False), http=http), upstream, before, inactive)
    refused(kong, call(kong, "never-issued-token", http=http), upstream, before, inactive)
    other = authz.issue_opaque({"aud": "http://other/mcp"})
    refused(kong, call(kong, other, http=http), upstream, before, "The access token is not intended for this resource")
    assert authz.count("introspection") == 3  # each token asked about once


SIGNATURE = "The access token's signature is invalid"
ALGORITHM = "The access token is signed with an algorithm this resource does not accept"
AUDIENCE = "The access token is not intended for this resource"
ISSUER = "The access token was not issued by a trusted authorization server"
#: The rule that refuses each attack of :func:`attacks` (its error_description).
REFUSED_BY = {
    "unsigned": ALGORITHM,
    "hs256 with the public key": ALGORITHM,
    "embedded jwk": SIGNATURE,
    "jku": "The access token's signing key is unknown",
    "expired": "The access token has expired",
    "not yet valid": "The access token is not valid yet",
    "wrong audience": AUDIENCE,
    "audience prefix": AUDIENCE,
    "no audience": AUDIENCE,
    "wrong issuer": ISSUER,
    "issuer near miss": ISSUER,
    "no expiry": "The access token has no expiry",
    "crit": "The access token has critical header parameters this resource does not understand",
    "id token typ": "The access token has an unacceptable typ",
    "truncated signature": SIGNATURE,
    "forged payload": SIGNATURE,
}


def attacks(authz: MockAuthorizationServer) -> dict[str, str]:
    rsa = authz.current_key("RS256")
    pem = rsa.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    rogue = MockAuthorizationServer(resource=RESOURCE)  # never started: only its keys are used
    rogue_key = rogue.current_key("RS256")
    return {
        "unsigned": authz.mint_unsigned(),
        "hs256 with the public key": authz.mint_hmac(pem, kid=rsa.kid),
        "embedded jwk": authz.mint(key=rogue_key, kid=rsa.kid, headers={"jwk": rogue_key.public_jwk}),
        "jku": authz.mint(key=rogue_key, headers={"jku": "http://127.0.0.1:1/jwks", "kid": "rogue"}),
        "expired": authz.mint({"exp": 1_000_000_000, "iat": 999_999_000}),
        "not yet valid": authz.mint({"nbf": 4_000_000_000}),
        "wrong audience": authz.mint({"aud": "http://localhost:8000/other"}),
        "audience prefix": authz.mint({"aud": "http://localhost:8000"}),
        "no audience": authz.mint(omit=("aud",)),
        "wrong issuer": authz.mint({"iss": "http://127.0.0.1:1"}),
        "issuer near miss": authz.mint({"iss": authz.issuer + ".evil"}),
        "no expiry": authz.mint(omit=("exp",)),
        "crit": authz.mint(headers={"crit": ["exp"]}),
        "id token typ": authz.mint(headers={"typ": "id_token+jwt"}),
        "truncated signature": authz.mint().rsplit(".", 1)[0] + ".AAAA",
        "forged payload": forge(authz.mint()),
    }


def forge(token: str) -> str:
    import base64

    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = "admin"
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{signature}"


def test_attacks_are_refused_with_401_and_never_proxied(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = jwt_kong(start_kong, authz)
    before = len(upstream.requests)
    tokens = attacks(authz)
    assert set(tokens) == set(REFUSED_BY)
    for name, token in tokens.items():
        response = call(kong, token, http=http)
        assert response.status_code == 401, name
        refused(kong, response, upstream, before, REFUSED_BY[name])
        assert kong.last.round_trips <= 5, name
    assert authz.count("jwks") == 1  # no attack made the plugin fetch keys again (or from the jku)
    assert authz.errors == []


def assert_no_plugin_errors(kong: KongStandIn) -> None:
    """No exception escaped into the plugin's catch-all (it logs "unexpected <type> at ...")."""
    assert server_errors(kong, ("unexpected", "Error")) == [], kong.server_output


def test_a_400_digit_time_claim_is_401_not_an_internal_error(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    """Valid JSON, no float can hold it: the comparison with the clock raised OverflowError (500, ERROR line)."""
    kong = jwt_kong(start_kong, authz)
    before = len(upstream.requests)
    for name in ("exp", "nbf", "iat"):
        response = call(kong, authz.mint({name: 10**400}), http=http)
        refused(kong, response, upstream, before, f"The access token's {name} claim is not a number")
        assert kong.last.round_trips <= 5, name
    assert_no_plugin_errors(kong)


def test_a_400_digit_exp_in_an_introspection_answer_is_503_not_an_internal_error(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = introspection_kong(start_kong, authz)
    before = len(upstream.requests)
    response = call(kong, authz.issue_opaque({"exp": 10**400}), http=http)
    refused(kong, response, upstream, before, "The introspection answer's exp is not a number", status=503)
    assert kong.last.round_trips <= 5
    assert_no_plugin_errors(kong)


def test_spoofed_identity_headers_never_reach_the_upstream(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = jwt_kong(
        start_kong,
        authz,
        claim_to_header=[{"claim": "sub", "header": "X-User"}, {"claim": "email", "header": "X-Email"}],
    )
    response = call(
        kong, authz.mint(), {"X-User": "admin", "X-Email": "admin@example.com", "x-user": "root"}, http=http
    )
    assert response.status_code == 200
    assert upstream.last["headers"]["x-user"] == ["user-1"]
    assert "x-email" not in upstream.last["headers"]
    assert upstream.last["headers"]["x-credential-identifier"] == ["user-1"]  # from the token, like X-User


def test_underscore_variants_of_controlled_headers_never_reach_the_upstream(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    """nginx with underscores_in_headers on (the stand-in's proxy too) passes X_Email on, and WSGI-style
    upstreams read it as X-Email; Kong's clear_header and set_headers keep "_" and "-" apart."""
    kong = jwt_kong(
        start_kong,
        authz,
        claim_to_header=[{"claim": "sub", "header": "X-User"}, {"claim": "email", "header": "X-Email"}],
    )
    spoofs = {
        "X_Email": "admin@example.com",
        "X_User": "root",
        "X_Credential_Identifier": "admin",
        "X_Consumer_ID": "forged",
        "X_Consumer_Username": "admin",
    }
    response = call(kong, authz.mint(), {**spoofs, "X_Request_Id": "kept"}, http=http)
    assert response.status_code == 200, response.text
    received = upstream.last["headers"]
    assert received["x-user"] == ["user-1"] and received["x-credential-identifier"] == ["user-1"]
    assert not set(received) & {name.lower() for name in spoofs}, received
    assert received["x_request_id"] == ["kept"]  # the stand-in does pass underscore names through
    cleared = [c.args[0] for c in kong.last.pdk_calls if c.method == "kong.service.request.clear_header"]
    assert sorted(cleared) == [
        "Authorization",
        "x_consumer_id",
        "x_consumer_username",
        "x_credential_identifier",
        "x_email",
        "x_user",
    ]
    assert_no_plugin_errors(kong)


def test_passthrough_credentials_keeps_the_token(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = jwt_kong(start_kong, authz, passthrough_credentials=True)
    token = authz.mint()
    assert call(kong, token, http=http).status_code == 200
    assert upstream.last["headers"]["authorization"] == [f"Bearer {token}"]
    assert [c.method for c in kong.last.pdk_calls][2:] == [
        "kong.service.request.set_headers",
        "kong.client.authenticate",
    ]


def test_key_rotation_is_picked_up_without_a_restart_at_most_once_per_10_seconds(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    kong = jwt_kong(start_kong, authz)
    assert call(kong, authz.mint(alg="ES256"), http=http).status_code == 200
    fetched = time.monotonic()
    authz.rotate("ES256")
    # Within 10 s of the last fetch an unknown kid does not refetch (flood protection): 401.
    response = call(kong, authz.mint(alg="ES256"), http=http)
    assert_refused(response, 401, "The access token's signing key is unknown", kong=kong)
    assert authz.count("jwks") == 1
    time.sleep(max(0.0, fetched + 10.2 - time.monotonic()))
    assert call(kong, authz.mint(alg="ES256"), http=http).status_code == 200
    assert authz.count("jwks") == 2


def test_jwks_endpoint_is_used_without_discovery(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    kong = jwt_kong(start_kong, authz, jwks_endpoint=authz.jwks_uri)
    assert call(kong, authz.mint(), http=http).status_code == 200
    assert authz.count("metadata") == 0
    assert authz.count("jwks") == 1


KEYS_UNAVAILABLE = "The authorization server's keys could not be obtained"


@pytest.mark.parametrize("endpoint,mode,description", [
    *[("jwks", mode, KEYS_UNAVAILABLE) for mode in ("500", "drop", "garbage", "wrong_json", "hang")],
    ("introspection", "500", "The authorization server could not introspect the token"),
    ("introspection", "drop", "The authorization server could not be reached"),
    ("introspection", "garbage", "The authorization server's introspection answer is not JSON"),
    ("introspection", "401", "The authorization server refused the gateway's credentials"),
    ("introspection", "hang", "The authorization server could not be reached"),
])  # fmt: skip
def test_an_unreachable_jwks_or_introspection_endpoint_is_503_never_401_or_proxied(
    start_kong: StartKong,
    authz: MockAuthorizationServer,
    http: requests.Session,
    upstream: EchoUpstream,
    endpoint: str,
    mode: str,
    description: str,
) -> None:
    validating = jwt_kong if endpoint == "jwks" else introspection_kong
    kong = validating(start_kong, authz, timeout=1000)
    authz.fault(endpoint, mode)
    before = len(upstream.requests)
    token = authz.mint() if endpoint == "jwks" else authz.issue_opaque()
    refused(kong, call(kong, token, http=http), upstream, before, description, status=503)
    assert kong.last.round_trips <= 5
    authz.release()


def test_discovery_with_an_issuer_path(start_kong: StartKong, http: requests.Session) -> None:
    with MockAuthorizationServer(issuer_path="/realms/mcp", resource=RESOURCE) as authz:
        authz.discovery["oauth"] = False
        kong = jwt_kong(start_kong, authz)
        assert call(kong, authz.mint(alg="EdDSA"), http=http).status_code == 200


def test_concurrent_requests_with_one_new_opaque_token_make_one_introspection(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    kong = introspection_kong(start_kong, authz)
    authz.slow_seconds = 0.5
    authz.fault("introspection", "slow", count=1)
    token = authz.issue_opaque()

    def one(_: int) -> int:
        return call(kong, token).status_code

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(one, range(20)))
    assert statuses == [200] * 20
    assert authz.count("introspection") == 1


def client_auth_configs(authz: MockAuthorizationServer) -> dict[str, dict[str, Any]]:
    """Each client_auth method Kong lists, registered at the mock and configured in the plugin."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    private = ec.generate_private_key(ec.SECP256R1())
    private_jwk = {**json.loads(ECAlgorithm.to_jwk(private)), "kid": "kong-key"}
    public_jwk = {**json.loads(ECAlgorithm.to_jwk(private.public_key())), "kid": "kong-key"}
    cert, key = authz.issue_client_cert("kong-mtls")
    self_cert, self_key = authz.issue_client_cert("kong-self", self_signed=True)
    jwt_secret = "a-shared-secret-of-more-than-32-bytes!"
    authz.add_client("post-client", "client_secret_post", secret="p@ss word")
    authz.add_client("jwt-client", "client_secret_jwt", secret=jwt_secret)
    authz.add_client("pkjwt-client", "private_key_jwt", public_jwk=public_jwk)
    authz.add_client("mtls-client", "tls_client_auth", cert_pem=cert)
    authz.add_client("self-client", "self_signed_tls_client_auth", cert_pem=self_cert)
    authz.add_client("public-client", "none")
    authz.add_client("basic:client id", "client_secret_basic", secret="s3cret/+=")
    mtls = {"mtls_introspection_endpoint": authz.mtls_introspection_endpoint, "tls_client_auth_ssl_verify": False}
    return {
        "client_secret_basic": {"client_id": "basic:client id", "client_secret": "s3cret/+="},
        "client_secret_post": {"client_auth": "client_secret_post", "client_id": "post-client",
                               "client_secret": "p@ss word"},
        "client_secret_jwt": {"client_auth": "client_secret_jwt", "client_id": "jwt-client", "client_secret": jwt_secret},
        "private_key_jwt": {"client_auth": "private_key_jwt", "client_id": "pkjwt-client",
                            "client_jwk": json.dumps(private_jwk), "client_alg": "ES256"},
        "tls_client_auth": {"client_auth": "tls_client_auth", "client_id": "mtls-client",
                            "tls_client_auth_cert": cert, "tls_client_auth_key": key, **mtls},
        "self_signed_tls_client_auth": {"client_auth": "self_signed_tls_client_auth", "client_id": "self-client",
                                        "tls_client_auth_cert": self_cert, "tls_client_auth_key": self_key, **mtls},
        "none": {"client_auth": "none", "client_id": "public-client"},
    }  # fmt: skip


def test_every_client_auth_method_authenticates_the_gateway_for_introspection(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    configs = client_auth_configs(authz)
    for method, config in configs.items():
        options = {"introspection_endpoint": authz.introspection_endpoint, "client_secret": None, **config}
        kong = start_kong(declarative(plugin_config(authorization_servers=[authz.issuer], **options)))
        response = call(kong, authz.issue_opaque(), http=http)
        assert response.status_code == 200, (method, response.text)
        recorded = [r for r in authz.requests if r.endpoint == "introspection"][-1]
        assert recorded.auth_method_used == method and recorded.client_id_authenticated == config["client_id"]
        kong.stop()  # SIGTERM to the plugin server
    assert authz.errors == []
    for method in ("tls_client_auth", "self_signed_tls_client_auth"):  # the key was never on disk, so none is left
        key_body = configs[method]["tls_client_auth_key"].splitlines()[1].encode()
        assert files_containing(key_body, tempfile.gettempdir()) == [], method


def test_wrong_gateway_credentials_are_503_not_401(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = introspection_kong(start_kong, authz, client_secret="wrong-secret")
    before = len(upstream.requests)
    response = call(kong, authz.issue_opaque(), http=http)
    refused(kong, response, upstream, before, "The authorization server refused the gateway's credentials", status=503)
    assert authz.count("introspection") == 1
