"""Behaviour §5: JWT validation. Each security rule has a test that fails without it."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import InvalidToken, Unavailable
from kong_plugins.ai_mcp_oauth2.jwt_validator import JwtValidator

from .conftest import kong_config
from .fakes import DOWN, ISSUER, RESOURCE, Clock, FakeHttp, Key, make_key, ok

HUGE = 10**400  # valid JSON; no float can hold it

JWKS = "https://as.example.com/jwks"
KEYS = {alg: make_key(alg) for alg in ("RS256", "PS256", "ES256", "EdDSA")}
ATTACKER = make_key("RS256", kid=KEYS["RS256"].kid)


def setup(
    *keys: Key, config: dict[str, Any] | None = None, jwks: dict[str, Any] | None = None
) -> tuple[JwtValidator, FakeHttp, Clock]:
    clock = Clock()
    http = FakeHttp().on(JWKS, ok(jwks or {"keys": [k.public_jwk() for k in (keys or KEYS.values())]}))
    options = {"jwks_endpoint": JWKS, "resource": RESOURCE, "authorization_servers": [ISSUER]}
    options.update(config or {})
    return JwtValidator(parse_config(kong_config(**options)), http, clock), http, clock  # type: ignore[arg-type]


def refused(validator: JwtValidator, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        validator.validate(token)
    return info.value.description


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_valid_tokens_of_each_asymmetric_algorithm_are_accepted(alg: str) -> None:
    validator, _, clock = setup()
    claims, until = validator.validate(KEYS[alg].mint(now=clock.now))
    assert claims["sub"] == "alice" and until == int(clock.now) + 300


def test_alg_none_is_refused() -> None:
    validator, http, clock = setup()
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"x"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"iss": ISSUER, "aud": RESOURCE, "exp": clock.now + 60}).encode())
    assert "algorithm" in refused(validator, f"{header}.{body.rstrip(b'=').decode()}.")
    assert http.calls == []


def test_hs256_signed_with_the_rsa_public_key_is_refused() -> None:
    """Algorithm confusion (RFC 8725 §2.1): the public key PEM used as an HMAC secret."""
    validator, _, clock = setup()
    pem = (
        KEYS["RS256"]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = jwt.encode(
        {"iss": ISSUER, "aud": RESOURCE, "exp": int(clock.now) + 60},
        b"x" * 32,
        algorithm="HS256",
        headers={"kid": KEYS["RS256"].kid},
    )
    assert "algorithm" in refused(validator, token)
    forged = jwt.api_jws.PyJWS(algorithms=["HS256"])
    forged._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
    token = forged.encode(
        json.dumps({"iss": ISSUER, "aud": RESOURCE, "exp": int(clock.now) + 60}).encode(),
        pem,
        algorithm="HS256",
        headers={"kid": KEYS["RS256"].kid},
    )
    assert "algorithm" in refused(validator, token)


def test_a_key_is_used_only_with_its_own_alg() -> None:
    """RFC 8725 §3.1: the JWK says RS256, the token claims PS256 with the same RSA key."""
    validator, _, clock = setup(KEYS["RS256"])
    token = jwt.encode(
        {"iss": ISSUER, "aud": RESOURCE, "exp": int(clock.now) + 60},
        KEYS["RS256"].private,
        algorithm="PS256",
        headers={"kid": KEYS["RS256"].kid},
    )
    assert refused(validator, token) == "The access token's signing key is unknown"


def test_a_key_without_alg_serves_the_algorithms_of_its_type() -> None:
    key = KEYS["RS256"]
    validator, _, clock = setup(jwks={"keys": [key.public_jwk(alg=None)]})
    token = jwt.encode(
        {"iss": ISSUER, "aud": RESOURCE, "exp": int(clock.now) + 60},
        key.private,
        algorithm="PS384",
        headers={"kid": key.kid},
    )
    assert validator.validate(token)[0]["iss"] == ISSUER
    ec_token = KEYS["ES256"].mint(now=clock.now, headers={"kid": key.kid})
    assert refused(validator, ec_token) == "The access token's signing key is unknown"


@pytest.mark.parametrize("injected", ["jwk", "jku", "x5u", "x5c"])
def test_keys_named_in_the_token_header_are_never_used(injected: str) -> None:
    validator, http, clock = setup()
    values = {
        "jwk": ATTACKER.public_jwk(), "jku": "https://evil.example/jwks", "x5u": "https://evil.example/cert",
        "x5c": ["MIIB"],
    }  # fmt: skip
    token = ATTACKER.mint(now=clock.now, headers={injected: values[injected]})
    assert refused(validator, token) == "The access token's signature is invalid"
    assert all(url == JWKS for _, url, _ in http.calls)


def test_crit_header_is_refused() -> None:
    validator, _, clock = setup()
    token = KEYS["RS256"].mint(now=clock.now, headers={"crit": ["exp"]})
    assert "critical" in refused(validator, token)


@pytest.mark.parametrize(
    "typ,accepted",
    [
        ("at+jwt", True),
        ("JWT", True),
        ("application/at+JWT", True),
        (None, True),
        ("id_token+jwt", False),
        ("JOSE", False),
        (1, False),
    ],
)
def test_typ_when_present_must_be_an_access_token_type(typ: Any, accepted: bool) -> None:
    validator, _, clock = setup()
    token = KEYS["ES256"].mint(now=clock.now, headers={"typ": typ})
    if accepted:
        validator.validate(token)
    else:
        assert "typ" in refused(validator, token)


@pytest.mark.parametrize(
    "claims,omit,leeway,expected",
    [
        ({}, ("exp",), 0, "The access token has no expiry"),
        ({"exp": -1}, (), 0, "The access token has expired"),
        ({"exp": 0}, (), 0, "The access token has expired"),  # exp == now: "on or after" (RFC 7519 §4.1.4)
        ({"exp": "9999999999"}, (), 0, "The access token's exp claim is not a number"),
        ({"exp": True}, (), 0, "The access token's exp claim is not a number"),
        ({"nbf": 30}, (), 0, "The access token is not valid yet"),
        ({"iat": 30}, (), 0, "The access token was issued in the future"),
        ({"exp": -20}, (), 10, "The access token has expired"),
    ],
)
def test_time_claims(claims: dict[str, Any], omit: tuple[str, ...], leeway: int, expected: str) -> None:
    validator, _, clock = setup(config={"jwt_claims_leeway": leeway})
    relative = {
        k: (int(clock.now) + v if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in claims.items()
    }
    assert refused(validator, KEYS["RS256"].mint(relative, now=clock.now, omit=omit)) == expected


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [pytest.param(HUGE, id="huge"), pytest.param(-HUGE, id="-huge")])
def test_a_time_claim_no_float_can_hold_is_refused_before_any_key_is_fetched(name: str, value: int) -> None:
    """A 400-digit integer is valid JSON; comparing it with the clock raised OverflowError (a 500).
    Times are checked before the signature, so the token need not be signed by a known key."""
    validator, http, clock = setup()
    assert (
        refused(validator, ATTACKER.mint({name: value}, now=clock.now))
        == f"The access token's {name} claim is not a number"
    )
    assert http.calls == []


def test_leeway_accepts_slightly_expired_and_early_tokens() -> None:
    validator, _, clock = setup(config={"jwt_claims_leeway": 30})
    now = int(clock.now)
    claims, _ = validator.validate(
        KEYS["RS256"].mint({"exp": now - 10, "nbf": now + 10, "iat": now + 10}, now=clock.now)
    )
    assert (claims["exp"], claims["nbf"], claims["sub"]) == (now - 10, now + 10, "alice")
    # the leeway is 30 s, not unbounded
    assert refused(validator, KEYS["RS256"].mint({"exp": now - 31}, now=clock.now)) == "The access token has expired"
    assert (
        refused(validator, KEYS["RS256"].mint({"nbf": now + 31}, now=clock.now)) == "The access token is not valid yet"
    )
    strict, _, _ = setup()
    assert refused(strict, KEYS["RS256"].mint({"exp": now - 10}, now=clock.now)) == "The access token has expired"


@pytest.mark.parametrize(
    "issuer",
    [
        "https://as.example.com.evil",
        "https://evil.example.com",
        "http://as.example.com",
        "https://as.example.com/x",
        None,
        ["https://as.example.com"],
    ],
)
def test_untrusted_issuers_are_refused_before_any_key_is_fetched(issuer: Any) -> None:
    validator, http, clock = setup()
    token = KEYS["RS256"].mint({"iss": issuer}, now=clock.now)
    assert refused(validator, token) == "The access token was not issued by a trusted authorization server"
    assert http.calls == []


def test_one_trailing_slash_on_issuer_or_audience_is_ignored() -> None:
    validator, _, clock = setup()
    validator.validate(KEYS["RS256"].mint({"iss": ISSUER + "/", "aud": RESOURCE + "/"}, now=clock.now))
    assert refused(validator, KEYS["RS256"].mint({"iss": ISSUER + "//"}, now=clock.now)).startswith(
        "The access token was not"
    )


@pytest.mark.parametrize(
    "audience",
    [
        None,
        "https://mcp.example.com",
        "https://mcp.example.com/mcp/other",
        ["https://other.example.com"],
        "HTTPS://mcp.example.com/mcp",
        [],
        5,
    ],
)
def test_tokens_for_another_audience_are_refused(audience: Any) -> None:
    validator, _, clock = setup()
    token = KEYS["RS256"].mint({"aud": audience}, now=clock.now, omit=("aud",) if audience is None else ())
    assert refused(validator, token) == "The access token is not intended for this resource"


def test_audience_list_containing_the_resource_and_relaxed_validation() -> None:
    validator, _, clock = setup()
    assert validator.validate(KEYS["RS256"].mint({"aud": ["https://other", RESOURCE]}, now=clock.now))[0]["aud"] == [
        "https://other",
        RESOURCE,
    ]
    other = KEYS["RS256"].mint({"aud": "https://other"}, now=clock.now)
    assert refused(validator, other) == "The access token is not intended for this resource"
    relaxed, _, _ = setup(config={"insecure_relaxed_audience_validation": True})
    assert relaxed.validate(other)[0]["aud"] == "https://other"  # the flag alone lets it through


def test_forged_and_degenerate_signatures_are_refused() -> None:
    validator, _, clock = setup()
    token = KEYS["ES256"].mint(now=clock.now)
    head, body, signature = token.split(".")
    tampered = (
        base64.urlsafe_b64encode(
            json.dumps({**json.loads(base64.urlsafe_b64decode(body + "==")), "sub": "admin"}).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    assert refused(validator, f"{head}.{tampered}.{signature}") == "The access token's signature is invalid"
    for degenerate in ("", "AAAA", base64.urlsafe_b64encode(b"\x00" * 64).rstrip(b"=").decode()):
        assert refused(validator, f"{head}.{body}.{degenerate}") == "The access token's signature is invalid"
    other = make_key("ES256", kid=KEYS["ES256"].kid)
    assert refused(validator, other.mint(now=clock.now)) == "The access token's signature is invalid"


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b",
        "a.b.c.d",
        "!!.e30.",
        "e30.e30.!!",
        "W10.e30.",
        "e30.bnVsbA.",
        "eyJhbGciOiJSUzI1NiIsImFsZyI6Im5vbmUifQ.e30.",
        "e30.e30.e",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwic3ViIjoiYiJ9.",
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    validator, http, _ = setup()
    refused(validator, token)
    assert http.calls == []


def test_unknown_kid_refetches_once_then_at_most_every_10_seconds() -> None:
    old, new = make_key("RS256"), make_key("RS256")
    validator, http, clock = setup(old)
    validator.validate(old.mint(now=clock.now))
    http.on(JWKS, ok({"keys": [new.public_jwk()]}))
    clock.now += 11
    validator.validate(new.mint(now=clock.now))  # rotation picked up by one refetch
    assert http.count(JWKS) == 2
    for i in range(20):
        assert refused(validator, make_key("ES256", kid=f"flood-{i}").mint(now=clock.now)) == (
            "The access token's signing key is unknown"
        )
    assert http.count(JWKS) == 2
    clock.now += 10
    refused(validator, make_key("ES256", kid="later").mint(now=clock.now))
    assert http.count(JWKS) == 3


def test_keys_already_held_survive_a_failed_fetch() -> None:
    key = KEYS["RS256"]
    validator, http, clock = setup(key, config={"jwks_cache_ttl": 60})
    validator.validate(key.mint(now=clock.now))
    http.on(JWKS, DOWN)
    clock.now += 61
    validator.validate(key.mint(now=clock.now))  # TTL passed, refetch failed, old keys still used
    assert http.count(JWKS) == 2


def test_no_keys_at_all_is_a_503_not_a_401() -> None:
    validator, http, clock = setup()
    http.on(JWKS, DOWN)
    with pytest.raises(Unavailable, match="^The authorization server's keys could not be obtained$"):
        validator.validate(KEYS["RS256"].mint(now=clock.now))
    http.on(JWKS, ok({"not": "a jwks"}))
    clock.now += 6
    with pytest.raises(Unavailable, match="^The authorization server's keys could not be obtained$"):
        validator.validate(KEYS["RS256"].mint(now=clock.now))


def test_unusable_keys_are_skipped_and_the_rest_still_count() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    small_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(small.public_key()))
    private_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEYS["PS256"].private))
    jwks = {"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, {"kty": "RSA", "kid": "broken", "n": "x"},
        {**small_jwk, "kid": "small"}, {**private_jwk, "kid": "private", "key_ops": None},
        KEYS["ES256"].public_jwk(use="enc"), "not a key", KEYS["EdDSA"].public_jwk(),
    ]}  # fmt: skip
    validator, _, clock = setup(jwks=jwks)
    validator.validate(KEYS["EdDSA"].mint(now=clock.now))
    assert refused(validator, KEYS["ES256"].mint(now=clock.now)) == "The access token's signing key is unknown"
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        small_token = jwt.encode(
            {"iss": ISSUER, "aud": RESOURCE, "exp": int(clock.now) + 60},
            small,
            algorithm="RS256",
            headers={"kid": "small"},
        )
    assert refused(validator, small_token) == "The access token's signing key is unknown"
    published_private = KEYS["PS256"].mint(now=clock.now, headers={"kid": "private"})
    assert refused(validator, published_private) == "The access token's signing key is unknown"


def test_duplicate_claims_are_refused_rather_than_resolved() -> None:
    """RFC 7515 §5.2: a parser taking the last "aud" would accept what another takes as the first."""
    validator, _, clock = setup()
    key = KEYS["RS256"]
    payload = (
        '{"iss":"%s","aud":"https://other.example.com","aud":"%s","exp":%d}' % (ISSUER, RESOURCE, int(clock.now) + 60)
    ).encode()
    token = jwt.api_jws.PyJWS().encode(payload, key.private, algorithm="RS256", headers={"kid": key.kid})
    assert refused(validator, token) == "The access token is malformed"


META = "https://as.example.com/.well-known/oauth-authorization-server"


def discovered(*answers: Any, config: dict[str, Any] | None = None) -> tuple[JwtValidator, FakeHttp, Clock]:
    validator, http, clock = setup(config={"jwks_endpoint": None, **(config or {})})
    http.on(META, *answers)
    return validator, http, clock


def test_keys_are_found_through_rfc_8414_discovery() -> None:
    validator, http, clock = discovered(ok({"issuer": ISSUER, "jwks_uri": JWKS}))
    validator.validate(KEYS["RS256"].mint(now=clock.now))
    validator.validate(KEYS["ES256"].mint(now=clock.now))
    assert http.count(META) == 1 and http.count(JWKS) == 1


def test_discovery_with_a_path_tries_mcps_order_and_needs_the_same_issuer() -> None:
    issuer = "https://as.example.com/tenant"
    validator, http, clock = setup(config={"jwks_endpoint": None, "authorization_servers": [issuer]})
    http.on(
        "https://as.example.com/.well-known/openid-configuration/tenant",
        ok({"issuer": "https://as.example.com/other", "jwks_uri": JWKS}),
    )
    http.on("https://as.example.com/tenant/.well-known/openid-configuration", ok({"issuer": issuer, "jwks_uri": JWKS}))
    validator.validate(KEYS["RS256"].mint({"iss": issuer}, now=clock.now))
    assert [url for _, url, _ in http.calls[:3]] == [
        "https://as.example.com/.well-known/oauth-authorization-server/tenant",
        "https://as.example.com/.well-known/openid-configuration/tenant",
        "https://as.example.com/tenant/.well-known/openid-configuration",
    ]


def test_metadata_with_a_different_issuer_is_never_used() -> None:
    validator, http, clock = discovered(ok({"issuer": "https://evil.example.com", "jwks_uri": JWKS}))
    with pytest.raises(Unavailable):
        validator.validate(KEYS["RS256"].mint(now=clock.now))
    assert http.count(JWKS) == 0


def test_discovery_retries_each_url_on_server_failure_and_moves_on_after_404() -> None:
    validator, http, clock = discovered(
        DOWN, ok({}, status=500), ok({"issuer": ISSUER, "jwks_uri": JWKS}), config={"metadata_discovery_retry": 3}
    )
    validator.validate(KEYS["RS256"].mint(now=clock.now))
    assert http.count(META) == 3
    failing, http2, clock2 = discovered(DOWN, config={"metadata_discovery_retry": 2})
    with pytest.raises(Unavailable):
        failing.validate(KEYS["RS256"].mint(now=clock2.now))
    assert http2.count(META) == 2
    assert http2.count("https://as.example.com/.well-known/openid-configuration") == 1  # 404: no retry


def test_metadata_discovery_endpoint_is_used_alone() -> None:
    custom = "https://idp.example.com/realms/x/.well-known/openid-configuration"
    validator, http, clock = setup(config={"jwks_endpoint": None, "metadata_discovery_endpoint": custom})
    http.on(custom, ok({"issuer": ISSUER, "jwks_uri": JWKS}))
    validator.validate(KEYS["RS256"].mint(now=clock.now))
    assert http.count(META) == 0 and http.count(custom) == 1


def test_metadata_is_cached_for_metadata_cache_ttl() -> None:
    validator, http, clock = discovered(ok({"issuer": ISSUER, "jwks_uri": JWKS}), config={"metadata_cache_ttl": 100})
    validator.validate(KEYS["RS256"].mint(now=clock.now))
    clock.now += 99
    validator.validate(KEYS["RS256"].mint(now=clock.now))
    assert http.count(META) == 1
    clock.now += 2
    validator.validate(KEYS["RS256"].mint(now=clock.now))
    assert http.count(META) == 2


def test_each_authorization_server_has_its_own_keys() -> None:
    other_issuer, other_jwks = "https://other.example.com", "https://other.example.com/keys"
    other_key = make_key("ES256")
    validator, http, clock = setup(config={"jwks_endpoint": None, "authorization_servers": [ISSUER, other_issuer]})
    http.on(META, ok({"issuer": ISSUER, "jwks_uri": JWKS}))
    http.on(
        other_issuer + "/.well-known/oauth-authorization-server", ok({"issuer": other_issuer, "jwks_uri": other_jwks})
    )
    http.on(other_jwks, ok({"keys": [other_key.public_jwk()]}))
    validator.validate(KEYS["RS256"].mint(now=clock.now))
    validator.validate(other_key.mint({"iss": other_issuer}, now=clock.now))
    # a key of one issuer does not validate tokens claiming the other
    assert (
        refused(validator, other_key.mint({"iss": ISSUER}, now=clock.now))
        == "The access token's signing key is unknown"
    )


def test_absurdly_nested_json_is_a_malformed_token_not_a_crash() -> None:
    validator, _, _ = setup()
    nested = base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=").decode()
    assert refused(validator, f"e30.{nested}.") == "The access token is malformed"


def test_metadata_naming_a_new_jwks_uri_on_every_refresh_keeps_a_bounded_number_of_key_sets() -> None:
    """A lying (or compromised) authorization server must not make the plugin hold a key set per answer."""
    validator, http, clock = discovered(*[ok({"issuer": ISSUER, "jwks_uri": f"{JWKS}?v={i}"}) for i in range(50)])
    for i in range(50):
        http.on(f"{JWKS}?v={i}", ok({"keys": [KEYS["RS256"].public_jwk()]}))
        validator.validate(KEYS["RS256"].mint(now=clock.now))
        clock.now += 3601  # metadata_cache_ttl: the next request discovers again
    assert http.count(META) == 50
    assert len(validator.keysets) <= 2 * len(validator.config.authorization_servers)
