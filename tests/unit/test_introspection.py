"""Behaviour §6: RFC 7662 introspection and the gateway's client authentication."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote_plus

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from kong_plugins.ai_mcp_oauth2.client_auth import basic_authorization
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import InvalidToken, Unavailable
from kong_plugins.ai_mcp_oauth2.introspection import INACTIVE_TTL, Introspector

from .conftest import kong_config
from .fakes import DOWN, ISSUER, RESOURCE, Clock, FakeHttp, make_client_cert, ok

HUGE = 10**400  # valid JSON; no float can hold it

ENDPOINT = "https://as.example.com/introspect"
ACTIVE = {"active": True, "sub": "alice", "aud": RESOURCE, "iss": ISSUER, "scope": "mcp:tools"}


def setup(*answers: Any, **config: Any) -> tuple[Introspector, FakeHttp, Clock]:
    clock = Clock()
    http = FakeHttp().on(ENDPOINT, *(answers or (ok({**ACTIVE, "exp": clock.now + 120}),)))
    options: dict[str, Any] = {"introspection_endpoint": ENDPOINT, "client_id": "gw", "client_secret": "s3cret"}
    options.update(config)
    return Introspector(parse_config(kong_config(**options)), http, clock), http, clock  # type: ignore[arg-type]


def sent(http: FakeHttp) -> tuple[dict[str, str], dict[str, list[str]]]:
    _, _, kwargs = http.calls[-1]
    form: dict[str, list[str]] = {}
    for name, value in kwargs["data"]:
        form.setdefault(name, []).append(value)
    return kwargs["headers"], form


def test_active_token_posts_token_and_hint_with_basic_auth_and_extra_args_and_headers() -> None:
    introspector, http, clock = setup(args={"resource": RESOURCE}, headers={"X-Tenant": "t1"})
    claims, until = introspector.introspect("opaque-token")
    assert claims is not None and claims["sub"] == "alice" and until == clock.now + 120
    headers, form = sent(http)
    assert http.calls[-1][0] == "POST"
    assert form == {"resource": [RESOURCE], "token": ["opaque-token"], "token_type_hint": ["access_token"]}
    assert headers["Authorization"] == basic_authorization("gw", "s3cret") and headers["X-Tenant"] == "t1"


def test_basic_credentials_are_form_encoded_before_base64() -> None:
    value = basic_authorization("client:id é", "p@ss word/+")
    decoded = base64.b64decode(value.removeprefix("Basic ")).decode()
    assert decoded == "client%3Aid+%C3%A9:p%40ss+word%2F%2B"
    assert [unquote_plus(part) for part in decoded.split(":")] == ["client:id é", "p@ss word/+"]


def test_client_secret_post_puts_credentials_in_the_form() -> None:
    introspector, http, _ = setup(client_auth="client_secret_post")
    introspector.introspect("t")
    headers, form = sent(http)
    assert "Authorization" not in headers and form["client_id"] == ["gw"] and form["client_secret"] == ["s3cret"]


def test_client_secret_jwt_sends_a_fresh_hs256_assertion_for_the_endpoint() -> None:
    secret = "a-client-secret-of-at-least-32-bytes"
    introspector, http, clock = setup(client_auth="client_secret_jwt", client_secret=secret)
    introspector.introspect("t")
    introspector.introspect("t")
    assertions = []
    for _, _, kwargs in http.calls:
        form = dict(kwargs["data"])
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        claims = jwt.decode(
            form["client_assertion"],
            secret,
            algorithms=["HS256"],
            audience=ENDPOINT,
            options={"verify_exp": False, "verify_iat": False},
        )
        assert claims["iss"] == claims["sub"] == "gw" and claims["exp"] - claims["iat"] == 60
        assertions.append(claims["jti"])
    assert len(set(assertions)) == 2


def test_private_key_jwt_signs_with_client_jwk() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(private)), "kid": "gw-key"}
    introspector, http, _ = setup(client_auth="private_key_jwt", client_jwk=json.dumps(jwk), client_secret=None)
    introspector.introspect("t")
    assertion = dict(http.calls[-1][2]["data"])["client_assertion"]
    assert jwt.get_unverified_header(assertion) == {"alg": "ES256", "kid": "gw-key", "typ": "JWT"}
    jwt.decode(
        assertion,
        private.public_key(),
        algorithms=["ES256"],
        audience=ENDPOINT,
        options={"verify_exp": False, "verify_iat": False},
    )


def test_none_sends_only_the_client_id() -> None:
    introspector, http, _ = setup(client_auth="none", client_secret=None)
    introspector.introspect("t")
    headers, form = sent(http)
    assert "Authorization" not in headers and form["client_id"] == ["gw"] and "client_secret" not in form


@pytest.mark.parametrize("answer,description", [
    ({"active": False}, None),
    ({"active": True, "aud": "https://other", "iss": ISSUER}, "The access token is not intended for this resource"),
    ({"active": True, "iss": ISSUER}, "The access token is not intended for this resource"),
    ({"active": True, "aud": RESOURCE, "iss": "https://evil.example.com"},
     "The access token was not issued by a trusted authorization server"),
    ({"active": True, "aud": RESOURCE, "exp": -5}, "The access token has expired"),
    ({"active": True, "aud": RESOURCE, "nbf": 50}, "The access token is not valid yet"),
])  # fmt: skip
def test_inactive_and_unacceptable_tokens(answer: dict[str, Any], description: str | None) -> None:
    clock = Clock()
    fixed = {k: (clock.now + v if k in ("exp", "nbf") and isinstance(v, int) else v) for k, v in answer.items()}
    introspector, _, _ = setup(ok(fixed))
    if description is None:
        claims, until = introspector.introspect("t")
        assert claims is None and until == clock.now + INACTIVE_TTL
        return
    with pytest.raises(InvalidToken) as info:
        introspector.introspect("t")
    assert info.value.description == description


@pytest.mark.parametrize("name", ["exp", "nbf"])
@pytest.mark.parametrize(
    "value", [pytest.param(HUGE, id="huge"), pytest.param(-HUGE, id="-huge"), "soon", True, {"t": 1}]
)
def test_an_exp_or_nbf_that_is_no_usable_number_is_the_servers_garbage_503(name: str, value: Any) -> None:
    """RFC 7662 §2.2: exp and nbf are integer timestamps. A 400-digit one raised OverflowError (a 500)."""
    introspector, _, _ = setup(ok({"active": True, "aud": RESOURCE, "iss": ISSUER, name: value}))
    with pytest.raises(Unavailable) as info:
        introspector.introspect("t")
    assert info.value.description == (f"The introspection answer's {name} is not a number")


@pytest.mark.parametrize("error", ["unsupported_token_type", "invalid_token"])
def test_a_400_about_the_token_is_401_not_503(error: str) -> None:
    introspector, _, _ = setup(ok({"error": error}, 400))
    with pytest.raises(InvalidToken, match="^The authorization server does not accept this access token$"):
        introspector.introspect("a-jwt-the-server-will-not-introspect")


def test_missing_audience_is_accepted_only_when_relaxed() -> None:
    introspector, _, _ = setup(ok({"active": True}), insecure_relaxed_audience_validation=True)
    claims, _ = introspector.introspect("t")
    assert claims == {"active": True}


def test_ttl_is_the_token_exp_and_one_hour_at_most_without_it() -> None:
    introspector, _, clock = setup(ok({"active": True, "aud": RESOURCE}))
    assert introspector.introspect("t")[1] == clock.now + 3600


UNREACHABLE = "The authorization server could not be reached"
FAILED = "The authorization server could not introspect the token"
CREDENTIALS = "The authorization server refused the gateway's credentials"
MALFORMED = "The authorization server's introspection answer is malformed"


@pytest.mark.parametrize("answer,description", [
    (DOWN, UNREACHABLE),
    (ok({"error": "server_error"}, 500), FAILED),
    (ok({"error": "invalid_client"}, 401), CREDENTIALS),
    (ok({}, 403), CREDENTIALS),
    (ok({"active": "yes"}), MALFORMED),
    (ok(["active"]), MALFORMED),
    (ok({}, 404), FAILED),
    (ok({"error": "invalid_request"}, 400), FAILED),
])  # fmt: skip
def test_server_failures_and_refused_gateway_credentials_are_503(answer: Any, description: str) -> None:
    introspector, _, _ = setup(answer)
    with pytest.raises(Unavailable) as info:
        introspector.introspect("t")
    assert info.value.description == description


def test_non_json_answer_is_503() -> None:
    from kong_plugins.ai_mcp_oauth2.http import HttpResponse

    introspector, _, _ = setup(HttpResponse(200, b"<html>"))
    with pytest.raises(Unavailable, match="^The authorization server's introspection answer is not JSON$"):
        introspector.introspect("t")


def test_tls_client_auth_ssl_verify_applies_only_to_the_mtls_alias() -> None:
    pem, key_pem = make_client_cert()
    common = {
        "client_auth": "tls_client_auth",
        "client_secret": None,
        "tls_client_auth_cert": pem,
        "tls_client_auth_key": key_pem,
        "tls_client_auth_ssl_verify": False,
    }
    plain, http, _ = setup(**common)
    plain.introspect("t")
    assert http.calls[-1][1] == ENDPOINT and http.calls[-1][2]["verify"] is None  # ssl_verify decides
    alias = "https://mtls.as.example.com/introspect"
    with_alias, http2, _ = setup(**common, mtls_introspection_endpoint=alias)
    http2.on(alias, ok({"active": True, "aud": RESOURCE}))
    with_alias.introspect("t")
    assert http2.calls[-1][1] == alias and http2.calls[-1][2]["verify"] is False
