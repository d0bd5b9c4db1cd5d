"""Key material, JWKs and compact JWS signing/verification for the mock authorization server.

Signing and verification are done here (not through ``jwt.encode``/``jwt.decode``) so that tests can
build any header they like (a header ``alg`` that differs from the signing algorithm, no ``kid``, no
``typ``, HMAC with an RSA public key PEM as the secret, ...) and so that short HMAC secrets never trigger
PyJWT's key-length warnings (pytest runs with warnings as errors).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGS: dict[str, type[ec.EllipticCurve]] = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
OKP_ALGS = ("EdDSA",)
ASYMMETRIC_ALGS = RSA_ALGS + tuple(EC_ALGS) + OKP_ALGS
HMAC_ALGS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
DEFAULT_ALGS = ("RS256", "PS256", "ES256", "EdDSA")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


@dataclass
class Key:
    """One signing key. ``public_jwk`` is what the JWKS publishes (never private members)."""

    kid: str
    alg: str
    private_key: Any
    public_jwk: dict[str, Any]
    private_jwk: dict[str, Any]
    published: bool = True
    created: int = field(default=0, repr=False)

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()


def _generate_private_key(alg: str) -> Any:
    if alg in RSA_ALGS:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg in EC_ALGS:
        return ec.generate_private_key(EC_ALGS[alg]())
    if alg in OKP_ALGS:
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported key algorithm {alg!r}; one of {', '.join(ASYMMETRIC_ALGS)}")


def _to_jwk(key_obj: Any, alg: str) -> dict[str, Any]:
    if alg in RSA_ALGS:
        return dict(jwt.algorithms.RSAAlgorithm.to_jwk(key_obj, as_dict=True))
    if alg in EC_ALGS:
        return dict(jwt.algorithms.ECAlgorithm.to_jwk(key_obj, as_dict=True))
    return dict(jwt.algorithms.OKPAlgorithm.to_jwk(key_obj, as_dict=True))


def new_key(alg: str, kid: str | None = None, publish: bool = True, jwk_alg: bool = True, seq: int = 0) -> Key:
    priv = _generate_private_key(alg)
    kid = kid or f"{alg.lower()}-{secrets.token_hex(4)}"
    pub = _to_jwk(priv.public_key(), alg)
    for m in _PRIVATE_MEMBERS + ("key_ops",):  # a published key never carries private members; "use" replaces key_ops
        pub.pop(m, None)
    pub.update({"kid": kid, "use": "sig"})
    if jwk_alg:
        pub["alg"] = alg
    else:
        pub.pop("alg", None)
    prv = _to_jwk(priv, alg)
    prv.pop("key_ops", None)
    prv.update({"kid": kid, "use": "sig", "alg": alg})
    return Key(kid=kid, alg=alg, private_key=priv, public_jwk=pub, private_jwk=prv, published=publish, created=seq)


def encode_segments(header: dict[str, Any], payload: dict[str, Any]) -> bytes:
    return (b64url(_json(header)) + "." + b64url(_json(payload))).encode("ascii")


def sign(alg: str, signing_input: bytes, key: Any) -> bytes:
    """Signature bytes for ``alg`` over ``signing_input``; ``key`` is a cryptography private key or HMAC bytes."""
    if alg in HMAC_ALGS:
        secret = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        return hmac.new(secret, signing_input, HMAC_ALGS[alg]).digest()
    return jwt.get_algorithm_by_name(alg).sign(signing_input, key)


def compact(header: dict[str, Any], payload: dict[str, Any], alg: str, key: Any) -> str:
    """Serialise a JWS; header entries whose value is None are dropped."""
    header = {k: v for k, v in header.items() if v is not None}
    si = encode_segments(header, payload)
    return si.decode("ascii") + "." + b64url(sign(alg, si, key))


class JWSError(ValueError):
    pass


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, payload, signing_input, signature) of a compact JWS, or JWSError."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise JWSError("not a compact JWS")
    h, p, s = token.split(".")
    try:
        header = json.loads(b64url_decode(h))
        payload = json.loads(b64url_decode(p))
        sig = b64url_decode(s)
    except (ValueError, TypeError) as e:
        raise JWSError(f"malformed JWS: {e}") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise JWSError("JWS header and payload must be JSON objects")
    return header, payload, f"{h}.{p}".encode("ascii"), sig


def verify(alg: str, signing_input: bytes, signature: bytes, key: Any) -> bool:
    """``key``: cryptography public key (asymmetric algs) or bytes/str secret (HS*)."""
    if alg in HMAC_ALGS:
        return hmac.compare_digest(sign(alg, signing_input, key), signature)
    if alg not in ASYMMETRIC_ALGS:
        return False
    algo = jwt.get_algorithm_by_name(alg)
    try:
        prepared = algo.prepare_key(key)
        return bool(algo.verify(signing_input, prepared, signature))
    except Exception:  # wrong key type for the alg, bad point, ...
        return False


def key_from_jwk(jwk_dict: dict[str, Any]) -> Any:
    """cryptography public key object from a public JWK dict (any kty PyJWT knows)."""
    return jwt.PyJWK(dict(jwk_dict)).key


def alg_fits_key(alg: str, key_obj: Any) -> bool:
    if alg in RSA_ALGS:
        return isinstance(key_obj, (rsa.RSAPublicKey, rsa.RSAPrivateKey))
    if alg in EC_ALGS:
        return isinstance(key_obj, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)) and isinstance(
            key_obj.curve, EC_ALGS[alg]
        )
    if alg in OKP_ALGS:
        return isinstance(key_obj, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey))
    return False
