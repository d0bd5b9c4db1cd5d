"""Attacks on DPoP (behaviour §14, RFC 9449 §4.3, §6, §7, §11), end to end: every check of a proof
and of a token's binding broken alone by a client that holds a bound token, through the Kong
stand-in and the real plugin server. Each refusal is asserted with its own ``error_description``,
so a test fails when its check is missing even if a later check would refuse the request too; a
control request next to most of them passes, so it is that check and nothing else refusing.

The replayed proof is tried on the same node and on a second node (its own plugin server) sharing
a real redis-server as cluster cache (behaviour §13, §14.3).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm

from tests.harness import cluster
from tests.harness import stack as C
from tests.harness.dpop_proofs import (
    ProofKey,
    access_token_hash,
    assert_challenged,
    challenge,
    dpop_call,
    hmac_signer,
    url,
)
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.redis_server import RedisServer
from tests.harness.upstream import EchoUpstream
from tests.integration.test_scopes import raw_post

SECRET = "kong-secret"
PROOF = "invalid_dpop_proof"
TOKEN = "invalid_token"
LIFETIME = 300  # dpop_proof_lifetime's default
NOT_A_JWS = "The DPoP proof is not a JWS"
BAD_ALG = "The DPoP proof's alg is not an allowed asymmetric algorithm"
NOT_PUBLIC = "The DPoP proof's jwk is not a public key"
ALG_MISFIT = "The DPoP proof's alg does not fit its key"
BAD_TYP = "The DPoP proof's typ is not dpop+jwt"
HTM = "The DPoP proof's htm is not the request's method"
HTU = "The DPoP proof's htu is not the request's URI"
ATH = "The DPoP proof's ath is not the access token's hash"
USED = "The DPoP proof was used before"
ONE_HEADER = "Exactly one DPoP header is required"
PUBLIC_URL = "https://mcp.example.com/mcp"  # what FORWARDED says the client asked for
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Port": "443"}


@pytest.fixture(scope="module")
def authz() -> Iterator[MockAuthorizationServer]:
    with MockAuthorizationServer(resource=C.RESOURCE) as server:
        server.add_client("kong", "client_secret_basic", secret=SECRET)
        yield server


def dpop_config(authz: MockAuthorizationServer, kind: str = "jwt", **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "authorization_servers": [authz.issuer],
        "claim_to_header": [{"claim": "sub", "header": "X-User"}],
        "proof_of_possession_dpop": "optional",
        "timeout": 2000,
    }
    if kind == "introspection":
        options |= {"introspection_endpoint": authz.introspection_endpoint, "client_id": "kong"}
        options["client_secret"] = SECRET
    return C.plugin_config(**options, **extra)


def document(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`tests.harness.stack.declarative` and a second route, ``/gw``, whose prefix Kong strips
    before the upstream (the plugin on both)."""
    doc = C.declarative(config)
    service = doc["services"][0]
    prefixed = {**service["routes"][0], "name": "prefixed", "paths": ["/gw"], "strip_path": True}
    service["routes"].append(prefixed)
    return doc


@pytest.fixture(scope="module")
def kongs(
    tmp_path_factory: pytest.TempPathFactory, upstream: EchoUpstream, authz: MockAuthorizationServer
) -> Iterator[dict[str, KongStandIn]]:
    """One node validating JWTs and one introspecting, in ``optional`` mode, behind a trusted proxy
    (loopback), so that ``X-Forwarded-*`` make the URL the plugin sees when they are sent."""
    prefix: Path = tmp_path_factory.mktemp("dpop-attacks")
    with C.started_kongs(prefix, upstream.port) as start:
        yield {
            kind: start(document(dpop_config(authz, kind)), trusted_ips=["127.0.0.1/32"])
            for kind in ("jwt", "introspection")
        }


@pytest.fixture(scope="module")
def key() -> ProofKey:
    return ProofKey("ES256")


@pytest.fixture(scope="module")
def kong(kongs: dict[str, KongStandIn]) -> KongStandIn:
    return kongs["jwt"]


@pytest.fixture(scope="module")
def token(authz: MockAuthorizationServer, key: ProofKey) -> str:
    return authz.mint({"cnf": {"jkt": key.jkt}})


def refused(
    response: requests.Response, kong: KongStandIn, upstream: EchoUpstream, before: int, description: str, error: str
) -> None:
    """401 with the error on the DPoP challenge (optional mode: ``DPoP`` then ``Bearer``), not proxied."""
    assert_challenged(response, kong, "optional", "DPoP", error, description, upstream, before)


def passes(response: requests.Response, upstream: EchoUpstream, path: str = "/mcp") -> None:
    assert response.status_code == 200, f"{response.headers.get('WWW-Authenticate')} {response.text}"
    assert upstream.last["path"] == path and "dpop" not in upstream.last["headers"]


def claims_of(proof: str) -> dict[str, Any]:
    segment = proof.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def public_pem(key: ProofKey) -> bytes:
    pem: bytes = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


# ------------------------------------------------------------------ the proof's header and signature
#: name -> (the proof for the request ``POST <url>`` with the token, from the key) and its refusal
Forge = Callable[[ProofKey, str, str], str]
RSA_KEY, P384_KEY, OTHER_EC_KEY = ProofKey("RS256"), ProofKey("ES384"), ProofKey("ES256")
HEADER_ATTACKS: dict[str, tuple[Forge, str]] = {
    # RFC 9449 §4.2/§4.3 6: jwk must be a public key, else the proof proves nothing
    "jwk with the private d (EC)": (lambda k, u, t: k.proof("POST", u, t, header={"jwk": k.private_jwk}), NOT_PUBLIC),
    "jwk with the private parts (RSA)": (
        lambda k, u, t: RSA_KEY.proof("POST", u, t, header={"jwk": RSA_KEY.private_jwk}),
        NOT_PUBLIC,
    ),
    "symmetric jwk (oct, k)": (
        lambda k, u, t: k.proof("POST", u, t, header={"jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
        NOT_PUBLIC,
    ),
    # alg confusion (§4.3 5): HMAC with the public key as the secret, none, an RSA alg on an EC key
    "HS256 keyed with the public key's PEM": (
        lambda k, u, t: k.proof("POST", u, t, header={"alg": "HS256"}, signer=hmac_signer(public_pem(k))),
        BAD_ALG,
    ),
    "HS256 keyed with the public jwk's JSON": (
        lambda k, u, t: k.proof(
            "POST", u, t, header={"alg": "HS256"}, signer=hmac_signer(json.dumps(k.public_jwk).encode())
        ),
        BAD_ALG,
    ),
    "alg none, no signature": (
        lambda k, u, t: k.proof("POST", u, t, header={"alg": "none"}, signer=lambda _: b""),
        BAD_ALG,
    ),
    "alg missing": (lambda k, u, t: k.proof("POST", u, t, header={"alg": None}), BAD_ALG),
    "RS256 proof naming an EC jwk": (
        lambda k, u, t: RSA_KEY.proof("POST", u, t, header={"jwk": k.public_jwk}),
        ALG_MISFIT,
    ),
    "ES256 on a P-384 jwk": (
        lambda k, u, t: P384_KEY.proof("POST", u, t, header={"alg": "ES256"}, signer=es256_on_p384),
        ALG_MISFIT,
    ),
    # the signature (§4.3 7): the jwk of the key, signed by another
    "signed by another key than its jwk": (
        lambda k, u, t: k.proof("POST", u, t, signer=OTHER_EC_KEY.sign),
        "The DPoP proof's signature is invalid",
    ),
    "jwk missing": (lambda k, u, t: k.proof("POST", u, t, header={"jwk": None}), "The DPoP proof has no jwk header"),
    # typ (§4.3 4): an access token or an ID token of the same key is not a proof
    "typ missing": (lambda k, u, t: k.proof("POST", u, t, header={"typ": None}), BAD_TYP),
    "typ JWT": (lambda k, u, t: k.proof("POST", u, t, header={"typ": "JWT"}), BAD_TYP),
    "typ at+jwt": (lambda k, u, t: k.proof("POST", u, t, header={"typ": "at+jwt"}), BAD_TYP),
    # the JWS itself (§4.3 2)
    "not a JWS": (lambda k, u, t: "not-a-proof", NOT_A_JWS),
    "a JWS with a garbled header": (lambda k, u, t: "eyJ!." + k.proof("POST", u, t).split(".", 1)[1], NOT_A_JWS),
    "over 8 KiB": (lambda k, u, t: padded(k, u, t, over=True), NOT_A_JWS),
}


def padded(key: ProofKey, htu: str, token: str, over: bool) -> str:
    """A valid proof (a ``pad`` claim) of at most 8192 bytes, as long as that goes, or with ``over``
    of 8193 bytes or a few more."""
    pad = (8192 - len(key.proof("POST", htu, token, claims={"pad": ""}))) * 3 // 4 - 8
    while len(key.proof("POST", htu, token, claims={"pad": "x" * (pad + 1)})) <= 8192:
        pad += 1
    proof = key.proof("POST", htu, token, claims={"pad": "x" * (pad + 1 if over else pad)})
    assert 8188 < len(proof) <= 8192 or (over and 8192 < len(proof) < 8196), len(proof)
    return proof


def es256_on_p384(signing_input: bytes) -> bytes:
    """ES256's SHA-256 with the P-384 key the jwk names (RFC 7518 §3.4: ES256 is P-256 only)."""
    return bytes(ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input, P384_KEY.private_key))


@pytest.mark.parametrize("attack", list(HEADER_ATTACKS))
def test_a_proof_with_a_bad_header_key_or_signature_is_refused(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream, attack: str
) -> None:
    forge, description = HEADER_ATTACKS[attack]
    before = len(upstream.requests)
    refused(dpop_call(kong, token, forge(key, url(kong), token)), kong, upstream, before, description, PROOF)
    passes(dpop_call(kong, token, key.proof("POST", url(kong), token)), upstream)


def test_a_proof_up_to_8_kib_passes_and_typ_is_compared_without_case(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream
) -> None:
    big = padded(key, url(kong), token, over=False)
    passes(dpop_call(kong, token, big), upstream)
    passes(dpop_call(kong, token, key.proof("POST", url(kong), token, header={"typ": "DPoP+JWT"})), upstream)


def test_two_dpop_headers_are_refused_even_when_each_is_valid(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream
) -> None:
    before = len(upstream.requests)
    proofs = [key.proof("POST", url(kong), token) for _ in range(2)]
    sent = [("Authorization", f"DPoP {token}")] + [("DPoP", p) for p in proofs]
    status, headers, body = raw_post(kong, json.dumps(C.MCP_REQUEST).encode(), sent)
    assert (status, json.loads(body)) == (401, {"error": PROOF, "error_description": ONE_HEADER})
    assert headers["www-authenticate"] == challenge(kong, "optional", "DPoP", PROOF, ONE_HEADER)
    assert kong.last.proxied is False and len(upstream.requests) == before
    passes(dpop_call(kong, token, proofs[0]), upstream)  # either alone was good


# --------------------------------------------------------------------------- htm and htu (§4.3 8–9)
def test_a_proof_for_another_method_is_refused(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream
) -> None:
    for htm in ("GET", "post", "PUT"):
        before = len(upstream.requests)
        refused(dpop_call(kong, token, key.proof(htm, url(kong), token)), kong, upstream, before, HTM, PROOF)
    before = len(upstream.requests)
    refused(
        dpop_call(kong, token, key.proof("POST", url(kong), token, claims={"htm": None})),
        kong,
        upstream,
        before,
        HTM,
        PROOF,
    )


def refused_htus(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream, cases: list[tuple[str, str]]
) -> None:
    """Each request to ``path`` with a proof for ``htu`` is refused for its htu."""
    for path, htu in cases:
        before = len(upstream.requests)
        response = dpop_call(kong, token, key.proof("POST", htu, token), path=path)
        refused(response, kong, upstream, before, HTU, PROOF)


def test_a_proof_for_the_path_behind_a_stripped_prefix_or_another_origin_is_refused(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream
) -> None:
    port = kong.port
    # /gw strips its prefix: the upstream gets /mcp, but the client's request, and so its proof, is /gw/mcp
    passes(dpop_call(kong, token, key.proof("POST", url(kong, "/gw/mcp"), token), path="/gw/mcp"), upstream)
    others = [
        ("/gw/mcp", url(kong, "/mcp")),  # the stripped path: what the upstream sees, not the request
        ("/gw/mcp", url(kong, "/gw")),
        ("/mcp", url(kong, "/gw/mcp")),  # a proof for the prefixed route used on the plain one
        ("/mcp", f"http://localhost:{port}/mcp"),  # another host
        ("/mcp", f"http://127.0.0.1:{port + 1}/mcp"),  # another port
        ("/mcp", f"https://127.0.0.1:{port}/mcp"),  # another scheme
        ("/mcp", "http://127.0.0.1/mcp"),  # the default port is not this one
        ("/mcp", f"ws://127.0.0.1:{port}/mcp"),
        ("/mcp", "/mcp"),  # not absolute
    ]
    refused_htus(kong, key, token, upstream, others)


def test_htu_ignores_query_and_fragment_and_case_of_scheme_and_host_but_not_path_differences(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream
) -> None:
    port = kong.port
    for path, htu in [
        ("/mcp?session=1", url(kong)),
        ("/mcp?session=1", url(kong, "/mcp?other=2")),
        ("/mcp", url(kong, "/mcp?x=1#fragment")),
        ("/mcp", f"HTTP://127.0.0.1:{port}/mcp"),
        ("/mcp", url(kong, "/%6Dcp")),  # an unreserved character percent-encoded (RFC 3986 §6.2.2.2)
        ("/mcp", url(kong, "/gw/../mcp")),  # dot segments (RFC 3986 §6.2.2.3)
    ]:
        passes(dpop_call(kong, token, key.proof("POST", htu, token), path=path), upstream, path.split("?")[0])
    different = [
        ("/mcp", url(kong, "/mcp/")),
        ("/mcp", url(kong, "/MCP")),
        ("/mcp", url(kong, "/mcp/tools")),
        ("/mcp/tools", url(kong)),  # a proof for the route's path used on a path below it
        ("/mcp?x=1", url(kong, "/mcp%3Fx=1")),  # the query smuggled into the path
    ]
    refused_htus(kong, key, token, upstream, different)


def test_htu_is_the_url_the_trusted_proxy_forwarded_not_the_one_kong_was_reached_at(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream
) -> None:
    for htu in (PUBLIC_URL, "https://MCP.example.com:443/mcp"):
        response = dpop_call(kong, token, key.proof("POST", htu, token), headers=FORWARDED)
        passes(response, upstream)
    before = len(upstream.requests)
    response = dpop_call(kong, token, key.proof("POST", url(kong), token), headers=FORWARDED)
    rm = 'resource_metadata="https://mcp.example.com/mcp/.well-known/oauth-protected-resource"'
    assert response.status_code == 401 and response.json()["error_description"] == HTU
    assert response.headers["WWW-Authenticate"].startswith(f'DPoP error="{PROOF}", error_description="{HTU}", algs=')
    assert rm in response.headers["WWW-Authenticate"] and len(upstream.requests) == before


# ------------------------------------------------------------------------ iat, ath, jti (§4.3 10–12)
@pytest.mark.parametrize(
    ("claims", "description"),
    [
        ({"iat": -LIFETIME - 10}, "The DPoP proof is too old"),
        ({"iat": 5 + 10}, "The DPoP proof is issued in the future"),  # jwt_claims_leeway 0 + 5 s of skew
        ({"iat": None}, "The DPoP proof has no usable iat"),
        ({"iat": "now"}, "The DPoP proof has no usable iat"),
        ({"iat": float("nan")}, "The DPoP proof has no usable iat"),  # JSON's NaN, which Python's parser reads
        ({"ath": None}, ATH),
        ({"ath": access_token_hash("another-token")}, ATH),
        ({"jti": None}, "The DPoP proof has no usable jti"),
        ({"jti": ""}, "The DPoP proof has no usable jti"),
    ],
    ids=["iat too old", "iat in the future", "iat missing", "iat a string", "iat NaN", "ath missing",
         "ath of another token", "jti missing", "jti empty"],
)  # fmt: skip
def test_a_proof_with_a_stale_or_missing_claim_is_refused(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream, claims: dict[str, Any], description: str
) -> None:
    if isinstance(claims.get("iat"), int):
        claims = {"iat": int(time.time()) + claims["iat"]}
    before = len(upstream.requests)
    refused(
        dpop_call(kong, token, key.proof("POST", url(kong), token, claims=claims)),
        kong,
        upstream,
        before,
        description,
        PROOF,
    )
    # the window's edges are inside: a proof almost as old as the lifetime, or a little ahead
    for iat in (int(time.time()) - LIFETIME + 10, int(time.time()) + 3):
        passes(dpop_call(kong, token, key.proof("POST", url(kong), token, claims={"iat": iat})), upstream)


def test_a_proof_replayed_on_the_same_node_is_refused(
    kongs: dict[str, KongStandIn], key: ProofKey, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    for kind, kong in kongs.items():
        bound = (
            authz.mint({"cnf": {"jkt": key.jkt}}) if kind == "jwt" else authz.issue_opaque({"cnf": {"jkt": key.jkt}})
        )
        proof = key.proof("POST", url(kong), bound)
        passes(dpop_call(kong, bound, proof), upstream)
        before = len(upstream.requests)
        refused(dpop_call(kong, bound, proof), kong, upstream, before, USED, PROOF)
        # the same jti by another key is another proof (the replay cache keys by thumbprint and jti)
        other = ProofKey("ES256")
        rebound = authz.mint({"cnf": {"jkt": other.jkt}})
        jti = claims_of(proof)["jti"]
        passes(dpop_call(kong, rebound, other.proof("POST", url(kong), rebound, claims={"jti": jti})), upstream)


def test_a_proof_replayed_on_another_node_sharing_the_cluster_cache_is_refused(
    start_kong: C.StartKong,
    authz: MockAuthorizationServer,
    key: ProofKey,
    redis_db: RedisServer,
    upstream: EchoUpstream,
) -> None:
    """Two nodes behind one load balancer (trusted, forwarding the public URL), each its own plugin
    server: a proof taken by node A is refused by node B, which never saw it, through Redis."""
    shared = cluster.with_redis(dpop_config(authz, "introspection"), redis_db.port, timeout_ms=2000)
    node_a, node_b = cluster.nodes(start_kong, shared, trusted_ips=["127.0.0.1/32"])
    token = authz.issue_opaque({"cnf": {"jkt": key.jkt}})
    proof = key.proof("POST", PUBLIC_URL, token)
    passes(dpop_call(node_a, token, proof, headers=FORWARDED), upstream)
    before = len(upstream.requests)
    response = dpop_call(node_b, token, proof, headers=FORWARDED)
    assert response.status_code == 401 and response.json()["error_description"] == USED, response.text
    assert node_b.last.proxied is False and len(upstream.requests) == before
    stored = redis_db.values()
    assert [k for k in stored if k.startswith(b"ai-mcp-oauth2:dpop_jti:")], stored
    jti = claims_of(proof)["jti"].encode()
    assert not any(jti in k + v for k, v in stored.items()), "the jti is stored in the clear"
    passes(dpop_call(node_b, token, key.proof("POST", PUBLIC_URL, token), headers=FORWARDED), upstream)

    # without the cluster cache each node takes it once: the refusal above is Redis's doing
    alone_a, alone_b = cluster.nodes(start_kong, dpop_config(authz, "introspection"), trusted_ips=["127.0.0.1/32"])
    proof = key.proof("POST", PUBLIC_URL, token)
    passes(dpop_call(alone_a, token, proof, headers=FORWARDED), upstream)
    passes(dpop_call(alone_b, token, proof, headers=FORWARDED), upstream)


# ------------------------------------------------------------------------------ the binding (§6, §7)
@pytest.mark.parametrize("kind", ["jwt", "introspection"])
def test_a_token_bound_to_another_key_or_unbound_or_sent_with_the_wrong_scheme_is_refused(
    kongs: dict[str, KongStandIn], key: ProofKey, authz: MockAuthorizationServer, upstream: EchoUpstream, kind: str
) -> None:
    kong = kongs[kind]

    def token(jkt: str | None) -> str:
        claims = {"cnf": {"jkt": jkt}} if jkt else {}
        return authz.mint(claims) if kind == "jwt" else authz.issue_opaque(claims)

    other = token(ProofKey("ES256").jkt)
    before = len(upstream.requests)
    response = dpop_call(kong, other, key.proof("POST", url(kong), other))
    refused(response, kong, upstream, before, "The access token is bound to another key than the DPoP proof's", TOKEN)

    unbound = token(None)
    response = dpop_call(kong, unbound, key.proof("POST", url(kong), unbound))
    refused(response, kong, upstream, before, "The access token is not DPoP-bound", TOKEN)
    passes(C.call(kong, unbound), upstream)  # as Bearer it is fine in optional mode

    bound = token(key.jkt)
    as_bearer = "The access token is DPoP-bound: present it with the DPoP scheme and a proof"
    before = len(upstream.requests)
    assert_challenged(C.call(kong, bound), kong, "optional", "Bearer", TOKEN, as_bearer, upstream, before)
    # a proof alongside changes nothing while the scheme says Bearer (RFC 9449 §7.2)
    response = C.call(kong, bound, headers={"DPoP": key.proof("POST", url(kong), bound)})
    assert_challenged(response, kong, "optional", "Bearer", TOKEN, as_bearer, upstream, before)
    passes(dpop_call(kong, bound, key.proof("POST", url(kong), bound)), upstream)


def test_a_stolen_token_and_proof_cannot_be_used_for_another_request(
    kong: KongStandIn, key: ProofKey, token: str, upstream: EchoUpstream
) -> None:
    """An attacker with a captured token and one captured proof, and a key of its own: a proof it
    signs names its key (not the token's), and the captured one is used up or for another URL."""
    attacker = ProofKey("ES256")
    captured = key.proof("POST", url(kong), token)
    passes(dpop_call(kong, token, captured), upstream)
    before = len(upstream.requests)
    bound_other = "The access token is bound to another key than the DPoP proof's"
    refused(
        dpop_call(kong, token, attacker.proof("POST", url(kong), token)), kong, upstream, before, bound_other, TOKEN
    )
    # its own key, the victim's thumbprint claimed in the header: the signature does not verify
    forged = attacker.proof("POST", url(kong), token, header={"jwk": key.public_jwk})
    refused(dpop_call(kong, token, forged), kong, upstream, before, "The DPoP proof's signature is invalid", PROOF)
    refused(dpop_call(kong, token, captured), kong, upstream, before, USED, PROOF)
