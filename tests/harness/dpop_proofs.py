"""DPoP proofs (RFC 9449 §4) for the end-to-end and attack tests: a client's key pair and the proofs
it signs, every part of them overridable so that a test breaks exactly one check of behaviour §14.

    key = ProofKey("ES256")
    token = authz.mint({"cnf": {"jkt": key.jkt}})           # bound to the key (RFC 9449 §6.1)
    proof = key.proof("POST", kong.proxy_url + "/mcp", token)
    dpop_call(kong, token, proof)

The thumbprint (RFC 7638) and ``ath`` are computed here, not with the plugin's code, so a test
checks the plugin against the RFCs rather than against itself. Nothing here reads /work/shared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from tests.harness import stack as C
from tests.harness.kong_standin import KongStandIn

ALGORITHMS = get_default_algorithms()
PRM_SUFFIX = "/mcp/.well-known/oauth-protected-resource"
_CURVES: dict[str, ec.EllipticCurve] = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
#: Every asymmetric algorithm the plugin allows, as the challenge's ``algs`` and the metadata list it
#: (RFC 9449 §5.1, §7.1) in code-point order, written out here rather than imported.
ALGS = ("ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token_hash(token: str) -> str:
    """RFC 9449 §4.2 ``ath``."""
    return b64url(hashlib.sha256(token.encode()).digest())


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 of the key's required members, ordered, as compact JSON."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in members) + "}"
    return b64url(hashlib.sha256(canonical.encode()).digest())


def _private_key(alg: str) -> Any:
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg])
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _merge(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``overrides`` (a None value removes the member)."""
    merged = {**base, **(overrides or {})}
    return {name: value for name, value in merged.items() if value is not None}


class ProofKey:
    """A DPoP client's key pair (``alg`` one of RS*/PS*/ES*/EdDSA) and the proofs it signs."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        self.private_key = _private_key(alg)
        self.public_jwk: dict[str, Any] = json.loads(ALGORITHMS[alg].to_jwk(self.private_key.public_key()))
        self.private_jwk: dict[str, Any] = json.loads(ALGORITHMS[alg].to_jwk(self.private_key))
        self.jkt = thumbprint(self.public_jwk)

    def sign(self, signing_input: bytes) -> bytes:
        return bytes(ALGORITHMS[self.alg].sign(signing_input, self.private_key))

    def proof(
        self,
        method: str,
        url: str,
        token: str | None = None,
        *,
        nonce: str | None = None,
        header: Mapping[str, Any] | None = None,
        claims: Mapping[str, Any] | None = None,
        signer: Callable[[bytes], bytes] | None = None,
    ) -> str:
        """A compact JWS: header ``typ``/``alg``/``jwk`` and claims ``jti``/``htm``/``htu``/``iat``
        (``ath`` with ``token``, ``nonce`` with ``nonce``), each overridden by ``header`` and
        ``claims`` (None removes); signed by this key, or by ``signer`` (the signing input in, the
        raw signature out)."""
        protected = _merge({"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}, header)
        body: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": int(time.time())}
        if token is not None:
            body["ath"] = access_token_hash(token)
        if nonce is not None:
            body["nonce"] = nonce
        body = _merge(body, claims)
        signing_input = (
            b64url(json.dumps(protected, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(body, separators=(",", ":")).encode())
        )
        signature = (signer or self.sign)(signing_input.encode())
        return signing_input + "." + b64url(signature)


def hmac_signer(secret: bytes) -> Callable[[bytes], bytes]:
    """An HS256 signer: for ``alg`` confusion, the public key's bytes as the HMAC secret."""
    return lambda signing_input: hmac.new(secret, signing_input, hashlib.sha256).digest()


def dpop_headers(token: str, proof: str | None) -> dict[str, str]:
    return {"Authorization": f"DPoP {token}", **({"DPoP": proof} if proof is not None else {})}


def dpop_call(
    kong: KongStandIn,
    token: str,
    proof: str | None,
    path: str = "/mcp",
    headers: dict[str, str] | None = None,
    http: requests.Session | None = None,
) -> requests.Response:
    """One MCP request (``tools/list``, POST) through the stand-in with ``Authorization: DPoP
    <token>`` and the ``proof`` (none when None) as its ``DPoP`` header."""
    sent = {**dpop_headers(token, proof), **(headers or {})}
    with C.session() as own:
        client = http or own
        return client.post(kong.proxy_url + path, json=C.MCP_REQUEST, headers=sent, timeout=30)


def url(kong: KongStandIn, path: str = "/mcp") -> str:
    """The URL the stand-in's plugin sees a direct request at: its ``htu``."""
    return kong.proxy_url + path


def metadata_url(kong: KongStandIn) -> str:
    """The ``resource_metadata`` of the challenges for the default resource (behaviour §3)."""
    return kong.proxy_url + PRM_SUFFIX


def challenge(
    kong: KongStandIn, mode: str, on: str | None = None, error: str = "", description: str = "", scope: str = ""
) -> str:
    """The ``WWW-Authenticate`` of behaviour §14.4: in ``strict`` mode ``DPoP`` alone, in
    ``optional`` mode ``DPoP`` then ``Bearer``; the error (if any) on the challenge of scheme ``on``,
    each naming ``scope`` when given."""
    rm = f'resource_metadata="{metadata_url(kong)}"' + (f', scope="{scope}"' if scope else "")

    def params(scheme: str) -> str:
        return f'error="{error}", error_description="{description}", ' if error and on == scheme else ""

    dpop = f'DPoP {params("DPoP")}algs="{" ".join(ALGS)}", {rm}'
    return dpop if mode == "strict" else f"{dpop}, Bearer {params('Bearer')}{rm}"


def assert_challenged(
    response: requests.Response,
    kong: KongStandIn,
    mode: str,
    on: str | None,
    error: str,
    description: str,
    upstream: Any = None,
    before: int | None = None,
) -> None:
    """A 401 with exactly the challenge of :func:`challenge`, the same error in the JSON body, and
    not proxied (with ``upstream``: the echo upstream still has ``before`` requests)."""
    context = f"{response.status_code} {response.headers.get('WWW-Authenticate')} {response.text}"
    assert response.status_code == 401, context
    assert response.headers["WWW-Authenticate"] == challenge(kong, mode, on, error, description), context
    if error:
        assert response.json() == {"error": error, "error_description": description}, context
    assert kong.last.proxied is False, "a refused request was proxied"
    if upstream is not None:
        assert len(upstream.requests) == before, "a refused request reached the upstream"
