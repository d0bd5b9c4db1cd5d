"""DPoP (RFC 9449, behaviour §14) end to end, with pieces nobody here wrote.

oidc-provider 8.8.1 with its DPoP feature on (server.mjs --dpop) issues DPoP-bound access tokens:
JWT access tokens carrying ``cnf.jkt`` (validated by the plugin with the provider's JWKS) and opaque
ones whose introspection answer carries ``cnf.jkt``. The DPoP client is ``requests-oauth2client``
(PyPI, pinned in pyproject.toml): its ``OAuth2ClientCredentialsAuth`` with a DPoP-enabled
``OAuth2Client`` proves possession of its own key at the token endpoint, gets a ``DPoPToken`` and
signs a fresh proof for every request it sends through the Kong stand-in and the real plugin server
to the echo upstream (the MCP server stand-in).

What the library does by itself (requests_oauth2client/dpop.py 1.8.0): ``DPoPToken.__call__`` sets
``Authorization: DPoP <token>`` and a ``DPoP`` proof (``htm``, ``htu`` without query and fragment,
``iat``, a UUID ``jti``, ``ath``, the last ``rs_nonce``); its response hook answers a ``401`` whose
``WWW-Authenticate`` *starts with* ``DPoP`` by taking the ``DPoP-Nonce`` header and sending the
request once more with a new proof. So in ``optional`` mode it retries only because the plugin puts
the DPoP challenge first (behaviour §14.4). That hook treats every such ``401`` as a nonce request
(it raises ``MissingDPoPNonce`` when the header is absent), so the refusals below are sent as plain
requests with proofs built by the library's own ``DPoPKey.proof`` (the client's key, or a fresh one).

Each configuration (``strict``, ``optional``, ``optional`` with ``dpop_use_nonce``; JWT and opaque
tokens) runs every test: the library's requests pass, and each bad proof or misused token is
refused with the challenge of behaviour §14.4 and never reaches the upstream.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import requests
from requests_oauth2client import (
    BearerToken,
    ClientSecretBasic,
    DPoPKey,
    DPoPToken,
    OAuth2Client,
    OAuth2ClientCredentialsAuth,
)

from tests.harness.kong_standin import KongStandIn
from tests.harness.stack import MCP_REQUEST, StartKong, declarative, session, started_kongs
from tests.harness.upstream import EchoUpstream

from .conftest import RESOURCE, OidcProvider, secret
from .test_oidc_provider import introspection_config, jwt_config

LIBRARY_VERSION = "1.8.0"
SCOPE = "mcp:tools"
LIFETIME = 300  # dpop_proof_lifetime's default
NONCE_SECRET = "dpop-nonce-sealing-secret"  # a JWT-validating gateway seals its nonces under this
# what each mode adds to the plugin config ("nonce": optional mode with server nonces, where the
# library retries a nonce challenge only because the DPoP challenge comes first)
MODES: dict[str, dict[str, Any]] = {
    "strict": {"proof_of_possession_dpop": "strict"},
    "optional": {"proof_of_possession_dpop": "optional"},
    "nonce": {"proof_of_possession_dpop": "optional", "dpop_use_nonce": True},
}
CLIENTS = {"jwt": "mcp-client", "opaque": "opaque-client"}  # server.mjs: JWT and opaque access tokens
PROOF_ALGS = ["ES256", "ES384", "PS256", "RS256", "EdDSA"]  # those the provider and the plugin both take

INVALID_PROOF = "invalid_dpop_proof"
USED = "The DPoP proof was used before"
TOO_OLD = "The DPoP proof is too old"
WRONG_HTU = "The DPoP proof's htu is not the request's URI"
WRONG_ATH = "The DPoP proof's ath is not the access token's hash"
OTHER_KEY = "The access token is bound to another key than the DPoP proof's"
BOUND_AS_BEARER = "The access token is DPoP-bound: present it with the DPoP scheme and a proof"
UNBOUND_AS_DPOP = "The access token is not DPoP-bound"
DPOP_ONLY = "This resource accepts DPoP-bound access tokens only"


def gateway_config(provider: OidcProvider, mode: str, validation: str, **extra: Any) -> dict[str, Any]:
    if validation == "jwt":
        secret_config = {"client_secret": NONCE_SECRET} if MODES[mode].get("dpop_use_nonce") else {}
        return jwt_config(provider, **MODES[mode], **secret_config, **extra)
    return introspection_config(provider, **MODES[mode], **extra)  # nonces sealed under its client_secret


@pytest.fixture(scope="module")
def provider(node_app: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """oidc-provider with its DPoP feature on."""
    oidc = OidcProvider(node_app, tmp_path_factory.mktemp("oidc-dpop"), dpop=True)
    oidc.start()
    assert "ES256" in oidc.metadata.get("dpop_signing_alg_values_supported", []), f"provider: {oidc.metadata}"
    yield oidc
    oidc.close()


@dataclass
class Gateway:
    kong: KongStandIn
    provider: OidcProvider
    upstream: EchoUpstream
    mode: str
    validation: str

    @property
    def url(self) -> str:
        return self.kong.proxy_url + "/mcp"

    @property
    def client_id(self) -> str:
        return CLIENTS[self.validation]

    def client(self, alg: str = "ES256", dpop: bool = True) -> OAuth2Client:
        """The library's OAuth client of the provider: with ``dpop``, each token request is proved
        with a new key of ``alg`` the library makes."""
        return OAuth2Client(
            token_endpoint=self.provider.token_endpoint,
            auth=ClientSecretBasic(self.client_id, secret(self.client_id)),
            session=session(),
            dpop_bound_access_tokens=dpop,
            dpop_alg=alg,
            testing=True,  # the provider is on http://127.0.0.1 (the library wants https otherwise)
        )

    def library(self, alg: str = "ES256", dpop: bool = True) -> tuple[requests.Session, OAuth2ClientCredentialsAuth]:
        """An HTTP session whose auth is the library's client credentials flow with :meth:`client`,
        and that auth (holding its token once a request was sent)."""
        auth = OAuth2ClientCredentialsAuth(self.client(alg, dpop), scope=SCOPE, resource=RESOURCE)
        http = session()
        http.auth = auth
        return http, auth

    def calls(self) -> int:
        return len(self.upstream.requests)


@pytest.fixture(
    scope="module",
    params=[(mode, validation) for validation in CLIENTS for mode in MODES],
    ids=lambda param: "-".join(param),
)
def gateway(
    request: pytest.FixtureRequest,
    provider: OidcProvider,
    upstream: EchoUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """The real plugin server behind the stand-in in front of the echo upstream, in one mode, for
    one kind of token; one per configuration, shared by the module's tests."""
    mode, validation = request.param
    with started_kongs(tmp_path_factory.mktemp(f"kong-{mode}-{validation}"), upstream.port) as start:
        kong = start(declarative(gateway_config(provider, mode, validation)))
        yield Gateway(kong, provider, upstream, mode, validation)


def dpop_token(auth: OAuth2ClientCredentialsAuth) -> DPoPToken:
    token = auth.token
    assert isinstance(token, DPoPToken), f"client: the library holds {token!r}, not a DPoPToken"
    return token


def bound_thumbprint(gateway: Gateway, token: str) -> str:
    """The provider's own word on the token's binding: its JWT's cnf.jkt (checked with PyJWT against
    the provider's keys) or its introspection answer's."""
    if gateway.validation == "jwt":
        claims = gateway.provider.verify(token, RESOURCE)
    else:
        claims = gateway.provider.introspect(token)
        assert claims["active"] is True and claims["token_type"] == "DPoP", f"provider: introspection {claims}"
    assert isinstance(claims.get("cnf"), dict), f"provider: no cnf in {claims}"
    return str(claims["cnf"]["jkt"])


def signed_in(gateway: Gateway) -> tuple[requests.Session, DPoPToken, requests.Response]:
    """The library's session after a first request that passed (in nonce mode: with its nonce)."""
    http, auth = gateway.library()
    response = http.post(gateway.url, json=MCP_REQUEST, timeout=30)
    assert_passed(gateway, response)
    return http, dpop_token(auth), response


def assert_passed(gateway: Gateway, response: requests.Response) -> None:
    assert response.status_code == 200, (
        f"plugin: refused the library's request: {response.status_code} "
        f"{response.headers.get('WWW-Authenticate')} {response.text}"
    )
    assert response.headers.get("X-Upstream") == "echo", "plugin: the answer is not the upstream's"
    received = response.json()["headers"]
    assert "dpop" not in received, f"plugin: the proof went upstream: {received}"
    assert "authorization" not in received, f"plugin: the token went upstream: {received}"


def raw_call(
    gateway: Gateway, token: str, proof: Any = None, scheme: str = "DPoP", method: str = "POST"
) -> requests.Response:
    """One request by hand: ``Authorization: <scheme> <token>`` and, if given, ``DPoP: <proof>``."""
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = str(proof)
    with session() as http:
        return http.request(method, gateway.url, json=MCP_REQUEST, headers=headers, timeout=30)


def ath(token: str) -> str:
    """RFC 9449 §4.2: the base64url SHA-256 of the access token (what the library puts in its proofs)."""
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode("ascii")).digest()).rstrip(b"=").decode()


def assert_dpop_refused(gateway: Gateway, response: requests.Response, error: str, description: str, before: int):
    """A ``401`` of behaviour §14.4 with ``error`` on the DPoP challenge (first, with ``algs`` and
    ``resource_metadata``), a ``Bearer`` challenge after it in optional mode only, nothing proxied."""
    challenge = response.headers.get("WWW-Authenticate", "")
    context = f"plugin: {response.status_code} {challenge} {response.text}"
    assert response.status_code == 401, context
    body = response.json()
    assert (body["error"], body["error_description"]) == (error, description), context
    assert challenge.startswith(f'DPoP error="{error}", error_description="{description}", algs="'), context
    assert "ES256" in challenge.split('algs="', 1)[1].split('"', 1)[0].split(), context
    assert f', resource_metadata="{gateway.kong.proxy_url}/' in challenge, context
    if gateway.mode == "strict":
        assert ", Bearer " not in challenge, context
    else:
        bearer = challenge.split(", Bearer ", 1)
        assert len(bearer) == 2 and "error=" not in bearer[1], context
    assert_not_proxied(gateway, before)


def assert_not_proxied(gateway: Gateway, before: int) -> None:
    assert gateway.kong.last.proxied is False, "plugin: a refused request was proxied"
    assert gateway.calls() == before, "plugin: a refused request reached the upstream"


# 1. the library's requests pass ------------------------------------------------------------------------


def test_the_library_is_the_pinned_release() -> None:
    from importlib.metadata import version

    assert version("requests-oauth2client") == LIBRARY_VERSION


def test_the_library_gets_a_dpop_bound_token_and_its_requests_reach_the_mcp_server(gateway: Gateway) -> None:
    http, auth = gateway.library()
    before, first = gateway.calls(), len(gateway.kong.requests)
    answers = [
        http.post(gateway.url, json=MCP_REQUEST, timeout=30),
        http.post(gateway.url + "?session=1", json={**MCP_REQUEST, "id": 2}, timeout=30),  # htu without the query
        http.get(gateway.url, headers={"Accept": "application/json"}, timeout=30),  # htm GET
    ]
    for answer in answers:
        assert_passed(gateway, answer)
    assert gateway.calls() == before + 3, "plugin: not every request reached the upstream"
    assert [r["method"] for r in gateway.upstream.requests[-3:]] == ["POST", "POST", "GET"]

    # the token the provider issued is bound to the library's key
    token = dpop_token(auth)
    assert token.token_type == "DPoP", f"provider: token_type {token.token_type}"
    assert bound_thumbprint(gateway, token.access_token) == token.dpop_key.dpop_jkt, "provider: cnf.jkt"
    # three fresh proofs, each with its own jti
    proofs = [jwt.decode(a.request.headers["DPoP"], options={"verify_signature": False}) for a in answers]
    assert len({p["jti"] for p in proofs}) == 3 and all(p["ath"] == ath(token.access_token) for p in proofs)

    statuses = [record.status for record in gateway.kong.requests[first:]]
    if gateway.mode == "nonce":
        # the first proof had no nonce: a use_dpop_nonce challenge, which the library answered by
        # itself; it kept the nonce for the next requests
        assert statuses == [401, 200, 200, 200], f"plugin: statuses {statuses}"
        refusal = gateway.kong.requests[first].exit
        assert refusal is not None, "plugin: the first request was not answered by the plugin"
        challenge = dict(refusal["headers"])
        assert challenge["WWW-Authenticate"].startswith('DPoP error="use_dpop_nonce"'), challenge
        assert token.dpop_key.rs_nonce == challenge["DPoP-Nonce"], "client: the library did not keep the nonce"
        assert all(p["nonce"] == token.dpop_key.rs_nonce for p in proofs)
    else:
        assert statuses == [200, 200, 200], f"plugin: statuses {statuses}"
        assert all("nonce" not in p for p in proofs)


@pytest.mark.parametrize("alg", PROOF_ALGS)
def test_proofs_of_every_key_type_the_library_makes_pass(gateway: Gateway, alg: str) -> None:
    http, auth = gateway.library(alg)
    before = gateway.calls()
    answer = http.post(gateway.url, json=MCP_REQUEST, timeout=30)
    assert_passed(gateway, answer)
    assert gateway.calls() == before + 1
    token = dpop_token(auth)
    assert jwt.get_unverified_header(answer.request.headers["DPoP"])["alg"] == alg
    assert bound_thumbprint(gateway, token.access_token) == token.dpop_key.dpop_jkt


def test_a_bearer_token_of_the_library_passes_in_optional_mode_only(gateway: Gateway) -> None:
    http, auth = gateway.library(dpop=False)
    before = gateway.calls()
    answer = http.post(gateway.url, json=MCP_REQUEST, timeout=30)
    assert type(auth.token) is BearerToken and auth.token.token_type == "Bearer", f"provider: {auth.token!r}"
    if gateway.mode == "strict":
        assert_dpop_refused(gateway, answer, "invalid_token", DPOP_ONLY, before)
    else:
        assert_passed(gateway, answer)
        assert gateway.calls() == before + 1


# 2. bad proofs and misused tokens are refused ------------------------------------------------------------


def test_a_replayed_proof_is_refused(gateway: Gateway) -> None:
    _, token, passed = signed_in(gateway)
    sent = passed.request.headers  # the proof the library made for the request that passed
    before = gateway.calls()
    with session() as http:
        again = http.post(
            gateway.url,
            json=MCP_REQUEST,
            headers={"Authorization": sent["Authorization"], "DPoP": sent["DPoP"]},
            timeout=30,
        )
    assert sent["Authorization"] == f"DPoP {token.access_token}"
    assert_dpop_refused(gateway, again, INVALID_PROOF, USED, before)


def test_a_stale_proof_is_refused(gateway: Gateway) -> None:
    _, token, _ = signed_in(gateway)
    key = token.dpop_key
    stale = DPoPKey(key.private_key, alg=key.alg, iat_generator=lambda: int(time.time()) - LIFETIME - 60)
    proof = stale.proof("POST", gateway.url, ath=ath(token.access_token), nonce=key.rs_nonce)
    before = gateway.calls()
    assert_dpop_refused(gateway, raw_call(gateway, token.access_token, proof), INVALID_PROOF, TOO_OLD, before)


@pytest.mark.parametrize("target", ["/other", "/mcp/x", "http://localhost:8000/mcp"])
def test_a_proof_for_another_uri_is_refused(gateway: Gateway, target: str) -> None:
    _, token, _ = signed_in(gateway)
    htu = target if target.startswith("http") else gateway.kong.proxy_url + target  # the resource's URL too
    proof = token.dpop_key.proof("POST", htu, ath=ath(token.access_token))
    before = gateway.calls()
    assert_dpop_refused(gateway, raw_call(gateway, token.access_token, proof), INVALID_PROOF, WRONG_HTU, before)


def test_a_proof_for_another_method_is_refused(gateway: Gateway) -> None:
    _, token, _ = signed_in(gateway)
    proof = token.dpop_key.proof("GET", gateway.url, ath=ath(token.access_token))
    before = gateway.calls()
    answer = raw_call(gateway, token.access_token, proof)
    assert_dpop_refused(gateway, answer, INVALID_PROOF, "The DPoP proof's htm is not the request's method", before)


def test_a_proof_without_ath_or_for_another_token_is_refused(gateway: Gateway) -> None:
    _, token, _ = signed_in(gateway)
    key = token.dpop_key
    before = gateway.calls()
    for proof in (
        key.proof("POST", gateway.url),  # no ath
        key.proof("POST", gateway.url, ath=ath(token.access_token + "x")),
    ):
        assert_dpop_refused(gateway, raw_call(gateway, token.access_token, proof), INVALID_PROOF, WRONG_ATH, before)


def test_a_proof_signed_by_another_key_than_the_tokens_is_refused(gateway: Gateway) -> None:
    _, token, _ = signed_in(gateway)
    for alg in ("ES256", "PS256"):
        thief = DPoPKey.generate(alg=alg, rs_nonce=token.dpop_key.rs_nonce)  # a valid proof of another key
        assert thief.dpop_jkt != token.dpop_key.dpop_jkt
        proof = thief.proof("POST", gateway.url, ath=ath(token.access_token))
        before = gateway.calls()
        assert_dpop_refused(gateway, raw_call(gateway, token.access_token, proof), "invalid_token", OTHER_KEY, before)


def test_a_dpop_bound_token_sent_as_bearer_is_refused(gateway: Gateway) -> None:
    _, token, _ = signed_in(gateway)
    before = gateway.calls()
    answer = raw_call(gateway, token.access_token, scheme="Bearer")
    challenge = answer.headers.get("WWW-Authenticate", "")
    if gateway.mode == "strict":  # a Bearer request is refused before the token is looked at
        assert_dpop_refused(gateway, answer, "invalid_token", DPOP_ONLY, before)
        return
    # optional: the error concerns the Bearer scheme, so it goes on the Bearer challenge, after the
    # DPoP one (RFC 9449 §7.2)
    context = f"plugin: {answer.status_code} {challenge} {answer.text}"
    assert answer.status_code == 401, context
    assert answer.json()["error_description"] == BOUND_AS_BEARER, context
    assert challenge.startswith('DPoP algs="') and "invalid" not in challenge.split(", Bearer ", 1)[0], context
    assert f', Bearer error="invalid_token", error_description="{BOUND_AS_BEARER}", resource_metadata="' in challenge
    assert_not_proxied(gateway, before)
    # with its proof too, a Bearer request stays a Bearer request
    proof = token.dpop_key.proof("POST", gateway.url, ath=ath(token.access_token))
    answer = raw_call(gateway, token.access_token, proof, scheme="Bearer")
    assert answer.status_code == 401 and answer.json()["error_description"] == BOUND_AS_BEARER, answer.text
    assert_not_proxied(gateway, before)


def test_a_bearer_token_sent_as_dpop_is_refused(gateway: Gateway) -> None:
    bearer = gateway.client(dpop=False).client_credentials(scope=SCOPE, resource=RESOURCE)
    assert type(bearer) is BearerToken and bearer.token_type == "Bearer", f"provider: {bearer!r}"
    unbound = bearer.access_token
    if gateway.validation == "jwt":
        assert "cnf" not in gateway.provider.verify(unbound, RESOURCE), "provider: an unbound token has cnf"
    else:
        assert "cnf" not in gateway.provider.introspect(unbound), "provider: an unbound token has cnf"
    _, signed, _ = signed_in(gateway)  # for the nonce
    key = DPoPKey.generate(rs_nonce=signed.dpop_key.rs_nonce)
    proof = key.proof("POST", gateway.url, ath=ath(unbound))
    before = gateway.calls()
    answer = raw_call(gateway, unbound, proof)
    assert_dpop_refused(gateway, answer, "invalid_token", UNBOUND_AS_DPOP, before)


def test_a_dpop_request_without_a_proof_is_refused(gateway: Gateway) -> None:
    _, token, _ = signed_in(gateway)
    before = gateway.calls()
    answer = raw_call(gateway, token.access_token)
    assert_dpop_refused(gateway, answer, INVALID_PROOF, "Exactly one DPoP header is required", before)


def test_in_nonce_mode_a_proof_without_or_with_a_forged_nonce_gets_a_fresh_nonce(gateway: Gateway) -> None:
    _, token, _ = signed_in(gateway)
    key = token.dpop_key
    nonce = key.rs_nonce
    assert (nonce is not None) == (gateway.mode == "nonce")
    before = gateway.calls()
    for sent in (None, "forged-" + (nonce or "x"), (nonce or "x")[:-2] + "AA"):
        plain = DPoPKey(key.private_key, alg=key.alg)
        proof = plain.proof("POST", gateway.url, ath=ath(token.access_token), nonce=sent)
        answer = raw_call(gateway, token.access_token, proof)
        if gateway.mode != "nonce":  # no nonce asked for, and one nobody asked for is not looked at
            assert_passed(gateway, answer)
            before += 1
            continue
        challenge = answer.headers.get("WWW-Authenticate", "")
        assert answer.status_code == 401 and challenge.startswith('DPoP error="use_dpop_nonce"'), challenge
        fresh = answer.headers.get("DPoP-Nonce")
        assert fresh and fresh != sent, f"plugin: DPoP-Nonce {fresh!r}"
        assert_not_proxied(gateway, before)


# 3. passthrough, and a nonce that expires ----------------------------------------------------------------


def test_with_passthrough_credentials_the_upstream_gets_the_token_and_the_proof_unchanged(
    start_kong: StartKong, provider: OidcProvider, upstream: EchoUpstream
) -> None:
    kong = start_kong(declarative(gateway_config(provider, "strict", "jwt", passthrough_credentials=True)))
    gateway = Gateway(kong, provider, upstream, "strict", "jwt")
    http, auth = gateway.library()
    answer = http.post(gateway.url, json=MCP_REQUEST, timeout=30)
    assert answer.status_code == 200 and kong.last.proxied, f"plugin: {answer.status_code} {answer.text}"
    received = answer.json()["headers"]
    assert received["authorization"] == [f"DPoP {dpop_token(auth).access_token}"], f"plugin: {received}"
    assert received["dpop"] == [answer.request.headers["DPoP"]], f"plugin: {received}"


def test_the_library_follows_a_new_nonce_when_its_nonce_expires(
    start_kong: StartKong, provider: OidcProvider, upstream: EchoUpstream
) -> None:
    # strict mode with nonces living 2 s: the library's second request carries an expired nonce, is
    # challenged again with a fresh one and retried by the library with it
    config = gateway_config(provider, "strict", "jwt", dpop_use_nonce=True, client_secret=NONCE_SECRET)
    kong = start_kong(declarative({**config, "dpop_proof_lifetime": 2}))
    gateway = Gateway(kong, provider, upstream, "strict", "jwt")
    http, auth = gateway.library()
    before = gateway.calls()
    assert_passed(gateway, http.post(gateway.url, json=MCP_REQUEST, timeout=30))
    first = dpop_token(auth).dpop_key.rs_nonce
    time.sleep(3)
    assert_passed(gateway, http.post(gateway.url, json=MCP_REQUEST, timeout=30))
    second = dpop_token(auth).dpop_key.rs_nonce
    assert first and second and first != second, "client: the library did not take the new nonce"
    assert [record.status for record in kong.requests] == [401, 200, 401, 200], "plugin: statuses"
    assert gateway.calls() == before + 2
