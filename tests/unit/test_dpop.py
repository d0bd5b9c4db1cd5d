"""Behaviour §14: DPoP proofs (RFC 9449 §4.3), the binding (§6), nonces (§9) and replays (§11.1),
each check with a test that fails without it."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
import pytest
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from kong_plugins.ai_mcp_oauth2 import dpop, gateway, metadata
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.dpop import (
    NonceKeeper,
    Proof,
    ProofChecker,
    access_token_hash,
    normal_uri,
    thumbprint,
)
from kong_plugins.ai_mcp_oauth2.errors import ConfigError, InvalidDpopProof, InvalidToken, MissingToken, UseDpopNonce

from .conftest import kong_config
from .fakes import Clock, make_key

URL = "https://mcp.example.com/mcp"
TOKEN = "access-token-0123456789"
KEY = make_key("ES256")


def checker(clock: Clock | None = None, **overrides: Any) -> ProofChecker:
    fields: dict[str, Any] = {"proof_of_possession_dpop": "optional", "client_secret": "s3cret-for-nonces"}
    fields.update(overrides)
    return ProofChecker(parse_config(kong_config(**fields)), clock or Clock())


def proof(
    key: Any = KEY,
    *,
    clock: Clock | None = None,
    headers: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    alg: str | None = None,
    signing_key: Any = None,
    **claims: Any,
) -> str:
    now = (clock or Clock()).now
    body: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "htm": "POST",
        "htu": URL,
        "iat": int(now),
        "ath": access_token_hash(TOKEN),
    }
    body.update(claims)
    for name in drop:
        body.pop(name)
    head = {"typ": "dpop+jwt", "jwk": {k: v for k, v in key.public_jwk().items() if k not in ("kid", "use", "alg")}}
    head.update(headers or {})
    return jwt.encode(body, signing_key or key.private, algorithm=alg or key.alg, headers=head)


def refused(value: str | list[str], description: str, check: ProofChecker | None = None, **request: Any) -> None:
    values = value if isinstance(value, list) else [value]
    with pytest.raises(InvalidDpopProof) as raised:
        (check or checker()).check(values, request.get("method", "POST"), request.get("url", URL), TOKEN)
    assert raised.value.description == description
    assert raised.value.status == 401 and raised.value.error == "invalid_dpop_proof"


# ---------------------------------------------------------------------------- building blocks


def test_thumbprint_is_rfc_7638s_example() -> None:
    """RFC 7638 §3.1: the example RSA key and its thumbprint."""
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCi"
        "FV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgn"
        "Yb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw"
        "0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert thumbprint({"kty": "oct", "k": "abc"}) is None
    assert thumbprint({"kty": "EC", "crv": "P-256", "x": "a", "y": ["b"]}) is None


def test_ath_is_rfc_9449s_example() -> None:
    """RFC 9449 §7.1: the example access token and the ``ath`` of its proof."""
    assert (
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")
        == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    )


@pytest.mark.parametrize(
    ("uri", "normal"),
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
        ("HTTPS://MCP.Example.COM:443/mcp?x=1#f", "https://mcp.example.com/mcp"),
        ("http://mcp.example.com:80", "http://mcp.example.com/"),
        ("http://mcp.example.com:8080/a/./b/../c", "http://mcp.example.com:8080/a/c"),
        ("https://mcp.example.com//mcp//tools", "https://mcp.example.com/mcp/tools"),  # as Kong's get_path
        ("https://mcp.example.com/%7Euser/%2f", "https://mcp.example.com/~user/%2F"),
        ("https://[::1]:8443/mcp", "https://[::1]:8443/mcp"),
        ("ftp://mcp.example.com/mcp", None),
        ("https://user@mcp.example.com/mcp", None),
        ("https://mcp.example.com:99999/mcp", None),
        ("/mcp", None),
    ],
)
def test_uris_compare_after_rfc_3986_normalisation(uri: str, normal: str | None) -> None:
    assert normal_uri(uri) == normal


# ---------------------------------------------------------------------------- RFC 9449 §4.3


def test_a_valid_proof_gives_its_keys_thumbprint() -> None:
    found = checker().check([proof()], "POST", URL, TOKEN)
    assert found.jkt == thumbprint(KEY.public_jwk())
    assert isinstance(found, Proof)
    other = make_key("RS256")
    assert checker().check([proof(other)], "POST", URL, TOKEN).jkt == thumbprint(other.public_jwk())


def test_one_dpop_header_holding_one_jws() -> None:
    refused([], "Exactly one DPoP header is required")
    refused([proof(), proof()], "Exactly one DPoP header is required")
    refused("not-a-jwt", "The DPoP proof is not a JWS")
    refused("a.b.c", "The DPoP proof is not a JWS")
    refused(proof(padding="x" * dpop.MAX_PROOF_BYTES), "The DPoP proof is not a JWS")


def test_typ_must_be_dpop_jwt() -> None:
    refused(proof(headers={"typ": "JWT"}), "The DPoP proof's typ is not dpop+jwt")
    refused(proof(headers={"typ": None}), "The DPoP proof's typ is not dpop+jwt")


def test_alg_must_be_asymmetric_allowed_and_fit_the_key() -> None:
    public_pem = KEY.private.public_key().public_bytes(
        encoding=__import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
        format=__import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["x"]
        ).PublicFormat.SubjectPublicKeyInfo,
    )
    hmac = jwt.api_jws.PyJWS()
    hmac._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]  # HMAC with a public key
    forged_head = {"typ": "dpop+jwt", "jwk": KEY.public_jwk()}
    claims = {"jti": "j", "htm": "POST", "htu": URL, "iat": int(Clock().now), "ath": access_token_hash(TOKEN)}
    forged = hmac.encode(json.dumps(claims).encode(), public_pem, algorithm="HS256", headers=forged_head)
    refused(forged, "The DPoP proof's alg is not an allowed asymmetric algorithm")
    unsigned = jwt.encode(claims, None, algorithm="none", headers=forged_head)  # type: ignore[arg-type]
    refused(unsigned, "The DPoP proof's alg is not an allowed asymmetric algorithm")
    rsa = make_key("RS256")
    refused(
        proof(KEY, headers={"alg": "RS256"}, alg="RS256", signing_key=rsa.private),
        "The DPoP proof's alg does not fit its key",
    )
    p384 = make_key("ES384")
    refused(
        proof(KEY, headers={"alg": "ES384"}, alg="ES384", signing_key=p384.private),
        "The DPoP proof's alg does not fit its key",
    )


def test_the_jwk_must_be_a_public_key() -> None:
    private = ECAlgorithm.to_jwk(KEY.private, as_dict=True)
    refused(proof(headers={"jwk": private}), "The DPoP proof's jwk is not a public key")
    refused(proof(headers={"jwk": {"kty": "oct", "k": "c2VjcmV0"}}), "The DPoP proof's jwk is not a public key")
    refused(proof(headers={"jwk": "not-an-object"}), "The DPoP proof has no jwk header")
    refused(proof(headers={"jwk": None}), "The DPoP proof has no jwk header")


def test_the_signature_must_be_by_the_jwk() -> None:
    other = make_key("ES256")
    refused(proof(KEY, signing_key=other.private), "The DPoP proof's signature is invalid")
    good = proof()
    head, body, signature = good.split(".")
    tampered_body = jwt.utils.base64url_encode(json.dumps({"jti": "x", "htm": "POST", "htu": URL}).encode()).decode()
    refused(f"{head}.{tampered_body}.{signature}", "The DPoP proof's signature is invalid")


def test_htm_and_htu_must_be_the_requests() -> None:
    refused(proof(htm="GET"), "The DPoP proof's htm is not the request's method")
    refused(proof(htm="post"), "The DPoP proof's htm is not the request's method")
    refused(proof(htu="https://mcp.example.com/other"), "The DPoP proof's htu is not the request's URI")
    refused(proof(htu="https://evil.example.com/mcp"), "The DPoP proof's htu is not the request's URI")
    refused(proof(htu="http://mcp.example.com/mcp"), "The DPoP proof's htu is not the request's URI")
    refused(proof(htu="https://mcp.example.com:8443/mcp"), "The DPoP proof's htu is not the request's URI")
    refused(proof(htu=["https://mcp.example.com/mcp"]), "The DPoP proof's htu is not the request's URI")
    refused(proof(drop=("htu",)), "The DPoP proof's htu is not the request's URI")
    # the same URI spelled otherwise, and with a query (compared without it)
    for spelling in (
        "HTTPS://MCP.EXAMPLE.COM:443/mcp",
        "https://mcp.example.com/mcp?session=1",
        "https://mcp.example.com/x/../mcp",
    ):
        assert checker().check([proof(htu=spelling)], "POST", URL, TOKEN).jti


def test_iat_within_the_proof_lifetime_and_the_leeway() -> None:
    clock = Clock()
    check = checker(clock, dpop_proof_lifetime=60, jwt_claims_leeway=10)
    assert check.check([proof(iat=int(clock.now) - 60)], "POST", URL, TOKEN)
    assert check.check([proof(iat=int(clock.now) + 10 + dpop.FUTURE_SKEW)], "POST", URL, TOKEN)
    refused(proof(iat=int(clock.now) - 61), "The DPoP proof is too old", check)
    refused(proof(iat=int(clock.now) + 16), "The DPoP proof is issued in the future", check)
    refused(proof(iat="now"), "The DPoP proof has no usable iat", check)
    refused(proof(iat=True), "The DPoP proof has no usable iat", check)
    refused(proof(drop=("iat",)), "The DPoP proof has no usable iat", check)


def test_ath_must_hash_the_access_token() -> None:
    refused(proof(drop=("ath",)), "The DPoP proof's ath is not the access token's hash")
    refused(proof(ath=access_token_hash("another-token")), "The DPoP proof's ath is not the access token's hash")


def test_jti_must_be_there() -> None:
    refused(proof(drop=("jti",)), "The DPoP proof has no usable jti")
    refused(proof(jti=""), "The DPoP proof has no usable jti")
    refused(proof(jti=123), "The DPoP proof has no usable jti")
    refused(proof(jti="x" * 257), "The DPoP proof has no usable jti")


# ---------------------------------------------------------------------------- replays and nonces


def test_a_proof_is_used_once() -> None:
    check = checker()
    found = check.check([proof(jti="once")], "POST", URL, TOKEN)
    check.first_use(found)
    again = check.check([proof(jti="once")], "POST", URL, TOKEN)
    with pytest.raises(InvalidDpopProof) as raised:
        check.first_use(again)
    assert raised.value.description == "The DPoP proof was used before"
    other_key = make_key("ES256")  # the same jti under another key is another proof
    check.first_use(check.check([proof(other_key, jti="once")], "POST", URL, TOKEN))


def test_a_used_proof_is_forgotten_once_it_expired() -> None:
    clock = Clock()
    check = checker(clock, dpop_proof_lifetime=60)
    check.first_use(check.check([proof(jti="j1", clock=clock)], "POST", URL, TOKEN))
    clock.now += 60 + dpop.FUTURE_SKEW + 1
    assert len(check.replay.seen) == 0  # nothing kept past the proof's own lifetime


def test_nonces_are_sealed_timestamps_any_node_accepts() -> None:
    clock = Clock()
    a = NonceKeeper("shared-secret", 300, 0, clock)
    b = NonceKeeper("shared-secret", 300, 0, clock)
    nonce = a.issue()
    assert b.valid(nonce) and a.issue() != nonce
    assert not NonceKeeper("another-secret", 300, 0, clock).valid(nonce)
    clock.now += 301
    assert not b.valid(nonce)
    assert not b.valid(nonce[:-2] + ("AA" if nonce[-2:] != "AA" else "BB"))
    for garbage in (None, 42, "", "!!!", "A" * 200):
        assert not b.valid(garbage)


def test_with_use_nonce_a_proof_without_a_valid_nonce_gets_a_fresh_one() -> None:
    clock = Clock()
    check = checker(clock, dpop_use_nonce=True)
    with pytest.raises(UseDpopNonce) as raised:
        check.check([proof(clock=clock)], "POST", URL, TOKEN)
    nonce = raised.value.extra_headers()["DPoP-Nonce"]
    assert raised.value.status == 401 and raised.value.error == "use_dpop_nonce"
    assert check.check([proof(clock=clock, nonce=nonce)], "POST", URL, TOKEN).jkt
    clock.now += 301
    with pytest.raises(UseDpopNonce):
        check.check([proof(clock=clock, nonce=nonce)], "POST", URL, TOKEN)


def test_use_nonce_without_a_secret_fails_closed_naming_the_field() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(kong_config(proof_of_possession_dpop="strict", dpop_use_nonce=True))
    assert raised.value.field == "dpop_use_nonce"
    parse_config(kong_config(proof_of_possession_dpop="off", dpop_use_nonce=True))  # off: nothing to seal


def test_the_replay_cache_is_shared_through_the_cluster_cache(redis_db) -> None:
    from kong_plugins.ai_mcp_oauth2.cluster_cache import ClusterCache

    fields = {"proof_of_possession_dpop": "strict", "cluster_cache_strategy": "redis",
              "cluster_cache_redis": {"host": "127.0.0.1", "port": redis_db.port}}  # fmt: skip
    config = parse_config(kong_config(**fields))
    clock = Clock(time.time())
    node_a = ProofChecker(config, clock, ClusterCache(config, clock))
    node_b = ProofChecker(config, clock, ClusterCache(config, clock))
    value = proof(clock=clock)
    node_a.first_use(node_a.check([value], "POST", URL, TOKEN))
    with pytest.raises(InvalidDpopProof):
        node_b.first_use(node_b.check([value], "POST", URL, TOKEN))
    (key,) = list(redis_db.values())
    assert key.startswith(b"ai-mcp-oauth2:dpop_jti:") and 0 < redis_db.client().pttl(key) <= 310_000


# ---------------------------------------------------------------------------- binding and answers


def test_the_token_must_be_bound_to_the_proofs_key() -> None:
    check = checker()
    found = check.check([proof()], "POST", URL, TOKEN)
    gateway.check_binding(check, found, {"cnf": {"jkt": found.jkt}})
    for claims, description in [
        ({"cnf": {"jkt": "another-thumbprint"}}, "The access token is bound to another key than the DPoP proof's"),
        ({}, "The access token is not DPoP-bound"),
        ({"cnf": {"x5t#S256": "abc"}}, "The access token is not DPoP-bound"),
    ]:
        with pytest.raises(InvalidToken) as raised:
            gateway.check_binding(check, check.check([proof()], "POST", URL, TOKEN), claims)
        assert raised.value.description == description
    with pytest.raises(InvalidToken) as bearer_raised:
        gateway.check_binding(check, None, {"cnf": {"jkt": found.jkt}})  # §7.2: a bound token as Bearer
    assert "DPoP-bound" in bearer_raised.value.description
    gateway.check_binding(check, None, {"sub": "alice"})  # an unbound bearer token


@pytest.mark.parametrize(
    ("mode", "refusal", "expected"),
    [
        ("off", MissingToken(), 'Bearer resource_metadata="R"'),
        ("strict", MissingToken(), 'DPoP algs="ALGS", resource_metadata="R"'),
        ("optional", MissingToken(), 'DPoP algs="ALGS", resource_metadata="R", Bearer resource_metadata="R"'),
        ("optional", InvalidToken("bad"), 'DPoP algs="ALGS", resource_metadata="R", Bearer error="invalid_token", error_description="bad", resource_metadata="R"'),
        ("optional", InvalidDpopProof("bad"), 'DPoP error="invalid_dpop_proof", error_description="bad", algs="ALGS", resource_metadata="R", Bearer resource_metadata="R"'),
        ("strict", InvalidToken("bad"), 'DPoP error="invalid_token", error_description="bad", algs="ALGS", resource_metadata="R"'),
    ],
)  # fmt: skip
def test_challenges_per_mode(mode: str, refusal: Any, expected: str) -> None:
    config = parse_config(kong_config(proof_of_possession_dpop=mode))
    header = gateway.www_authenticate(config, refusal, "R", ())
    assert header == expected.replace("ALGS", " ".join(dpop.signing_algorithms()))


def test_the_metadata_document_advertises_dpop() -> None:
    def document(mode: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(metadata.document(parse_config(kong_config(proof_of_possession_dpop=mode))))
        return loaded

    assert "dpop_signing_alg_values_supported" not in document("off")
    assert document("optional")["dpop_signing_alg_values_supported"] == list(dpop.signing_algorithms())
    assert "dpop_bound_access_tokens_required" not in document("optional")
    assert document("strict")["dpop_bound_access_tokens_required"] is True
    assert "HS256" not in document("strict")["dpop_signing_alg_values_supported"]


def test_the_dpop_header_is_removed_upstream_unless_passed_through() -> None:
    headers = {"authorization": ["DPoP t"], "dpop": ["proof"]}
    config = parse_config(kong_config(proof_of_possession_dpop="optional"))
    assert "DPoP" in gateway.upstream_changes(config, headers, {}).clear_headers
    kept = parse_config(kong_config(proof_of_possession_dpop="optional", passthrough_credentials=True))
    assert "DPoP" not in gateway.upstream_changes(kept, headers, {}).clear_headers
    bearer_only = {"authorization": ["Bearer t"]}
    assert "DPoP" not in gateway.upstream_changes(config, bearer_only, {}).clear_headers  # no round trip


def test_rsa_proofs_verify_too() -> None:
    rsa = make_key("PS256")
    jwk = RSAAlgorithm.to_jwk(rsa.private.public_key(), as_dict=True)
    assert checker().check([proof(rsa)], "POST", URL, TOKEN).jkt == thumbprint(jwk)


def test_one_cluster_cache_per_instance_serves_introspection_and_dpop_replays(redis_db) -> None:
    """One Redis pool per plugin instance, whatever it shares (behaviour §13, §14.3)."""
    fields = {
        "proof_of_possession_dpop": "optional",
        "introspection_endpoint": "https://as.example.com/introspect",
        "client_id": "gw",
        "client_secret": "gw-secret",
        "client_auth": "client_secret_post",
        "cluster_cache_strategy": "redis",
        "cluster_cache_redis": {"host": "127.0.0.1", "port": redis_db.port},
    }
    instance = gateway.Gateway(kong_config(**fields))
    assert instance.error is None and instance.cluster is not None
    assert instance.verifier.shared is instance.cluster  # type: ignore[union-attr]
    assert instance.proofs is not None and instance.proofs.replay.shared is instance.cluster
    instance.close()
    jwt_only = gateway.Gateway(kong_config(**{**fields, "introspection_endpoint": None}))
    assert jwt_only.proofs is not None and jwt_only.proofs.replay.shared is jwt_only.cluster is not None
    off = gateway.Gateway(kong_config(**{**fields, "proof_of_possession_dpop": "off", "cluster_cache_items": []}))
    assert off.cluster is None  # nothing to share: no cache, no pool
