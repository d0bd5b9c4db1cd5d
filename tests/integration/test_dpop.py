"""Behaviour §14 end to end: DPoP (RFC 9449) in ``optional`` and ``strict`` modes, with JWTs and
introspected tokens of the mock authorization server bound to a client key (``cnf.jkt``), proofs
signed by that key, the real plugin server behind the Kong stand-in and what the echo upstream
receives: the challenges of §14.4, the server nonces of §9 across two plugin servers, the metadata
members and the PDK round trips of §14.5. The attacks on each check are in
tests/faults/test_dpop_attacks.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.harness import stack as C
from tests.harness.dpop_proofs import ALGS, ProofKey, assert_challenged, challenge, dpop_call, metadata_url, url
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.upstream import EchoUpstream

SECRET = "kong-secret"
NONCE_NEEDED = "The DPoP proof must carry a nonce from this server"
BEARER_CALLS = [
    "kong.request.get_headers",
    "kong.request.get_path",
    "kong.service.request.set_headers",
    "kong.service.request.clear_header",
    "kong.client.authenticate",
]


@pytest.fixture(scope="module")
def authz() -> Iterator[MockAuthorizationServer]:
    with MockAuthorizationServer(resource=C.RESOURCE) as server:
        server.add_client("kong", "client_secret_basic", secret=SECRET)
        yield server


@pytest.fixture(scope="module")
def key() -> ProofKey:
    return ProofKey("ES256")


def config(authz: MockAuthorizationServer, kind: str, mode: str, **extra: Any) -> dict[str, Any]:
    """The plugin's config with DPoP ``mode``, validating JWTs (``jwt``) or introspecting (``introspection``)."""
    options: dict[str, Any] = {
        "authorization_servers": [authz.issuer],
        "claim_to_header": [{"claim": "sub", "header": "X-User"}],
        "proof_of_possession_dpop": mode,
    }
    if kind == "introspection":
        options |= {"introspection_endpoint": authz.introspection_endpoint, "client_id": "kong"}
        options["client_secret"] = SECRET
    return C.plugin_config(**options, **extra)


def token_for(authz: MockAuthorizationServer, kind: str, jkt: str | None, sub: str = "dpop-user") -> str:
    """A token of ``kind`` (a JWT, or an opaque token introspected) bound to ``jkt`` (None: a bearer token)."""
    claims: dict[str, Any] = {"sub": sub, **({"cnf": {"jkt": jkt}} if jkt else {})}
    return authz.mint(claims) if kind == "jwt" else authz.issue_opaque(claims)


def calls(kong: KongStandIn) -> list[str]:
    return [c.method for c in kong.last.pdk_calls]


# ------------------------------------------------------------------------------- requests that pass
@pytest.mark.parametrize("kind", ["jwt", "introspection"])
@pytest.mark.parametrize("mode", ["optional", "strict"])
def test_a_dpop_request_reaches_the_upstream_without_its_token_and_proof_unless_passed_through(
    start_kong: C.StartKong,
    authz: MockAuthorizationServer,
    key: ProofKey,
    upstream: EchoUpstream,
    mode: str,
    kind: str,
) -> None:
    kong = start_kong(C.declarative(config(authz, kind, mode)))
    token = token_for(authz, kind, key.jkt)
    for _ in range(2):  # first seen, then cached: a fresh proof each time
        response = dpop_call(kong, token, key.proof("POST", url(kong), token))
        assert response.status_code == 200, response.text
        received = upstream.last["headers"]
        assert received["x-user"] == ["dpop-user"]
        assert "dpop" not in received and "authorization" not in received
    assert kong.last.pdk_calls[-2].method == "kong.service.request.clear_header"
    assert kong.last.pdk_calls[-2].args == ["DPoP"]

    kong.reload(C.declarative(config(authz, kind, mode, passthrough_credentials=True)))
    proof = key.proof("POST", url(kong), token)
    assert dpop_call(kong, token, proof).status_code == 200
    received = upstream.last["headers"]
    assert received["authorization"] == [f"DPoP {token}"] and received["dpop"] == [proof]
    assert "kong.service.request.clear_header" not in calls(kong)


def test_bearer_tokens_still_pass_in_optional_mode_and_dpop_is_not_taken_when_off(
    start_kong: C.StartKong, authz: MockAuthorizationServer, key: ProofKey, upstream: EchoUpstream
) -> None:
    kong = start_kong(C.declarative(config(authz, "jwt", "optional")))
    bearer = token_for(authz, "jwt", None)
    assert C.call(kong, bearer).status_code == 200
    # a DPoP header beside a bearer token is not looked at, and not forwarded either
    assert C.call(kong, bearer, headers={"DPoP": key.proof("POST", url(kong), bearer)}).status_code == 200
    assert "dpop" not in upstream.last["headers"] and "authorization" not in upstream.last["headers"]
    kong.reload(C.declarative(config(authz, "jwt", "off")))
    bound = token_for(authz, "jwt", key.jkt)
    assert C.call(kong, bound).status_code == 200  # with DPoP off a bound token is a bearer token (§14)
    before = len(upstream.requests)
    response = dpop_call(kong, bound, key.proof("POST", url(kong), bound))
    C.assert_refused(response, 401, C.MISSING_TOKEN, kong=kong, upstream=upstream, before=before)
    assert response.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{metadata_url(kong)}"'


# ------------------------------------------------------------------------------------- challenges
@pytest.mark.parametrize("mode", ["optional", "strict"])
def test_challenges_name_dpop_first_or_alone_with_the_error_on_the_scheme_it_concerns(
    start_kong: C.StartKong, authz: MockAuthorizationServer, key: ProofKey, upstream: EchoUpstream, mode: str
) -> None:
    kong = start_kong(C.declarative(config(authz, "introspection", mode)))
    before, introspections = len(upstream.requests), authz.count("introspection")
    token = token_for(authz, "introspection", key.jkt)

    def check(response: requests.Response, on: str | None, error: str = "", description: str = "") -> None:
        assert_challenged(response, kong, mode, on, error, description, upstream, before)

    check(C.call(kong), None)  # no token: no error on either challenge
    wrong_method = key.proof("GET", url(kong), token)
    htm = "The DPoP proof's htm is not the request's method"
    check(dpop_call(kong, token, wrong_method), "DPoP", "invalid_dpop_proof", htm)
    check(dpop_call(kong, token, None), "DPoP", "invalid_dpop_proof", "Exactly one DPoP header is required")
    assert authz.count("introspection") == introspections, "a bad proof cost a call to the authorization server"

    if mode == "strict":  # a bearer token is refused before any token work (§14.1)
        only = "This resource accepts DPoP-bound access tokens only"
        check(C.call(kong, token_for(authz, "introspection", None)), "DPoP", "invalid_token", only)
        assert authz.count("introspection") == introspections
    else:  # a bearer request's error goes on the Bearer challenge
        inactive = "The access token is not active"
        check(C.call(kong, authz.issue_opaque(active=False)), "Bearer", "invalid_token", inactive)
    # a DPoP request's token error goes on the DPoP challenge (RFC 9449 §7.1)
    revoked = token_for(authz, "introspection", key.jkt)
    authz.revoke(revoked)
    response = dpop_call(kong, revoked, key.proof("POST", url(kong), revoked))
    check(response, "DPoP", "invalid_token", "The access token is not active")


@pytest.mark.parametrize("mode", ["optional", "strict"])
def test_insufficient_scope_of_a_dpop_request_is_a_403_on_the_dpop_challenge(
    start_kong: C.StartKong, authz: MockAuthorizationServer, key: ProofKey, upstream: EchoUpstream, mode: str
) -> None:
    kong = start_kong(C.declarative(config(authz, "jwt", mode, scopes_required=["admin"])))
    token = token_for(authz, "jwt", key.jkt)
    before = len(upstream.requests)
    response = dpop_call(kong, token, key.proof("POST", url(kong), token))
    insufficient = "The access token does not grant the scopes this operation needs"
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    expected = challenge(kong, mode, "DPoP", "insufficient_scope", insufficient, scope="admin")
    assert response.headers["WWW-Authenticate"] == expected
    assert kong.last.proxied is False and len(upstream.requests) == before
    if mode == "optional":  # a bearer token: the error on the Bearer challenge
        response = C.call(kong, token_for(authz, "jwt", None))
        expected = challenge(kong, mode, "Bearer", "insufficient_scope", insufficient, scope="admin")
        assert response.status_code == 403 and response.headers["WWW-Authenticate"] == expected


# ------------------------------------------------------------------------------------------ nonces
def test_server_nonces_are_demanded_retried_and_accepted_by_another_node_of_the_same_config(
    start_kong: C.StartKong, authz: MockAuthorizationServer, key: ProofKey, upstream: EchoUpstream
) -> None:
    nonce_config = config(authz, "jwt", "optional", dpop_use_nonce=True, client_secret="shared-nonce-secret")
    node_a, node_b = start_kong(C.declarative(nonce_config)), start_kong(C.declarative(nonce_config))
    assert C.server_pid(node_a) != C.server_pid(node_b)
    token = token_for(authz, "jwt", key.jkt)
    before, jwks = len(upstream.requests), authz.count("jwks")

    response = dpop_call(node_a, token, key.proof("POST", url(node_a), token))
    assert_challenged(response, node_a, "optional", "DPoP", "use_dpop_nonce", NONCE_NEEDED, upstream, before)
    nonce = response.headers["DPoP-Nonce"]
    assert authz.count("jwks") == jwks, "a proof without its nonce cost a call to the authorization server"
    assert dpop_call(node_a, token, key.proof("POST", url(node_a), token, nonce=nonce)).status_code == 200
    # the other node (its own plugin server) accepts the same nonce, in a new proof
    assert dpop_call(node_b, token, key.proof("POST", url(node_b), token, nonce=nonce)).status_code == 200
    before = len(upstream.requests)

    garbled = nonce[:-4] + ("AAAA" if not nonce.endswith("AAAA") else "BBBB")
    response = dpop_call(node_b, token, key.proof("POST", url(node_b), token, nonce=garbled))
    assert_challenged(response, node_b, "optional", "DPoP", "use_dpop_nonce", NONCE_NEEDED, upstream, before)
    fresh = response.headers["DPoP-Nonce"]
    assert fresh not in (nonce, garbled)
    assert dpop_call(node_b, token, key.proof("POST", url(node_b), token, nonce=fresh)).status_code == 200


def test_a_nonce_of_another_secret_or_past_its_lifetime_gets_a_fresh_challenge(
    start_kong: C.StartKong, authz: MockAuthorizationServer, key: ProofKey, upstream: EchoUpstream
) -> None:
    lifetime = 2
    short = config(authz, "jwt", "strict", dpop_use_nonce=True, client_secret="one", dpop_proof_lifetime=lifetime)
    kong = start_kong(C.declarative(short))
    other = start_kong(C.declarative({**short, "client_secret": "another"}))
    token = token_for(authz, "jwt", key.jkt)
    foreign = dpop_call(other, token, key.proof("POST", url(other), token)).headers["DPoP-Nonce"]
    before = len(upstream.requests)
    response = dpop_call(kong, token, key.proof("POST", url(kong), token, nonce=foreign))
    assert_challenged(response, kong, "strict", "DPoP", "use_dpop_nonce", NONCE_NEEDED, upstream, before)
    nonce = response.headers["DPoP-Nonce"]
    assert dpop_call(kong, token, key.proof("POST", url(kong), token, nonce=nonce)).status_code == 200
    time.sleep(lifetime + 1.1)  # the nonce expires; the proof below is new (its iat is now)
    before = len(upstream.requests)
    response = dpop_call(kong, token, key.proof("POST", url(kong), token, nonce=nonce))
    assert_challenged(response, kong, "strict", "DPoP", "use_dpop_nonce", NONCE_NEEDED, upstream, before)
    assert response.headers["DPoP-Nonce"] != nonce


def test_dpop_use_nonce_without_a_secret_to_seal_nonces_fails_closed(
    start_kong: C.StartKong, authz: MockAuthorizationServer, key: ProofKey, upstream: EchoUpstream
) -> None:
    kong = start_kong(C.declarative(config(authz, "jwt", "optional", dpop_use_nonce=True)))
    token = token_for(authz, "jwt", key.jkt)
    before = len(upstream.requests)
    response = dpop_call(kong, token, key.proof("POST", url(kong), token))
    assert response.status_code == 500 and len(upstream.requests) == before
    assert any("dpop_use_nonce" in line for line in kong.server_output)


# ---------------------------------------------------------------------------------------- metadata
def test_the_metadata_document_advertises_dpop_per_mode(
    start_kong: C.StartKong, authz: MockAuthorizationServer
) -> None:
    kong = start_kong(C.declarative(config(authz, "jwt", "off")))
    documents = {}
    for mode in ("off", "optional", "strict"):
        kong.reload(C.declarative(config(authz, "jwt", mode)))
        with C.session() as http:
            documents[mode] = http.get(metadata_url(kong), timeout=10).json()
    base = {"resource": C.RESOURCE, "authorization_servers": [authz.issuer], "bearer_methods_supported": ["header"]}
    assert documents["off"] == base
    assert documents["optional"] == {**base, "dpop_signing_alg_values_supported": list(ALGS)}
    assert documents["strict"] == {
        **base,
        "dpop_signing_alg_values_supported": list(ALGS),
        "dpop_bound_access_tokens_required": True,
    }


# ------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["jwt", "introspection"])
def test_bearer_requests_cost_the_same_with_dpop_optional_and_dpop_requests_at_most_six_more(
    start_kong: C.StartKong, authz: MockAuthorizationServer, key: ProofKey, kind: str
) -> None:
    kong = start_kong(C.declarative(config(authz, kind, "off")))
    bearer, bound = token_for(authz, kind, None), token_for(authz, kind, key.jkt)
    seen: dict[str, tuple[list[str], int]] = {}
    for mode in ("off", "optional"):
        kong.reload(C.declarative(config(authz, kind, mode)))
        for _ in range(2):  # the second, repeated token is the one compared
            assert C.call(kong, bearer).status_code == 200
        seen[mode] = calls(kong), kong.last.round_trips
    assert seen["optional"] == seen["off"] == (BEARER_CALLS, 5)

    kong.reload(C.declarative(config(authz, kind, "off")))
    assert C.call(kong, bound).status_code == 200 and C.call(kong, bound).status_code == 200
    as_bearer = kong.last.round_trips
    for mode in ("optional", "strict"):
        kong.reload(C.declarative(config(authz, kind, mode)))
        for _ in range(2):
            assert dpop_call(kong, bound, key.proof("POST", url(kong), bound)).status_code == 200
        assert calls(kong) == [
            "kong.request.get_headers",
            "kong.request.get_path",
            "kong.request.get_forwarded_scheme",
            "kong.request.get_forwarded_host",
            "kong.request.get_forwarded_port",
            "kong.request.get_method",
            "kong.service.request.set_headers",
            "kong.service.request.clear_header",
            "kong.service.request.clear_header",
            "kong.client.authenticate",
        ]
        assert kong.last.round_trips == as_bearer + 5 <= as_bearer + 6
