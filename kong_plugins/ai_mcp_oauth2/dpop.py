"""DPoP, sender-constrained access tokens (RFC 9449), at the resource server (behaviour §14).

With ``proof_of_possession_dpop`` ``optional`` or ``strict``, a request may present its token as
``Authorization: DPoP <token>`` with one ``DPoP`` header holding a proof: a JWT the client signs with
a key it keeps. :class:`ProofChecker` makes the checks of RFC 9449 §4.3 and §7.1:

1. one ``DPoP`` header, one compact JWS in it (§4.3 1–2);
2. ``typ`` ``dpop+jwt``; ``alg`` asymmetric, of the access tokens' allow-list, and one the ``jwk``
   header's ``kty``/``crv`` is used with; ``jwk`` a public key, never private parts, that the
   authorization server's keys could be (:func:`.jwks.bind_key`: RSA of 2048 to 8192 bits with an
   exponent of at most 32 bits, so a proof costs one ordinary signature check) (§4.2, §4.3 4–6);
3. the signature by that key (§4.3 7);
4. ``htm`` the request's method, ``htu`` the request's URI without query and fragment, both sides
   compared after RFC 3986 §6.2.2 and §6.2.3 normalisation (§4.3 8–9);
5. ``nonce``, when ``dpop_use_nonce``, one this resource issued and not expired (§4.3 10, §9);
6. ``iat`` within ``dpop_proof_lifetime`` in the past and ``jwt_claims_leeway`` plus
   :data:`FUTURE_SKEW` seconds in the future (§4.3 11, §11.1);
7. ``ath``, the base64url SHA-256 of the access token (§4.3 12, §7.1);
8. ``jti`` present, and never seen before within the proof's lifetime (:class:`ReplayCache`, §11.1).

The token's binding (§6, §7.1): its ``cnf.jkt`` (JWT claim or introspection member) must be the
RFC 7638 thumbprint of the proof's key (:func:`thumbprint`); a token bound so presented as
``Bearer`` is refused (§7.2), as is an unbound token presented as ``DPoP``.

Nonces (§9) are stateless so that any node of a cluster accepts any node's: the time it was issued,
sealed with AES-GCM under a key derived (HKDF, RFC 5869) from secret configuration every node has
(``client_secret``, else the private ``client_jwk``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from cachetools import TLRUCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigError, InvalidDpopProof, UseDpopNonce
from .jwks import ASYMMETRIC_ALGS, bind_key, key_algorithms
from .schema import Config

PROOF_TYPE = "dpop+jwt"
FUTURE_SKEW = 5  # seconds a proof's iat may be ahead beyond jwt_claims_leeway (clocks drift)
MAX_PROOF_BYTES = 8192  # a proof with an RSA-4096 key is about 1.5 KiB
REPLAY_ENTRIES = 100_000  # proofs remembered per node within their lifetime
# RFC 7638 §3.2: the members of each key type's thumbprint, in lexicographic order
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
# RFC 7517 §9.2 / RFC 7518 §6: the members only a private or symmetric key has
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_NONCE_LABEL = b"ai-mcp-oauth2/dpop-nonce/v1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: Mapping[str, Any]) -> str | None:
    """RFC 7638 §3: the base64url SHA-256 of the key's required members as ordered, compact JSON;
    None for a key type without a thumbprint rule or a member that is not a string."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        return None
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token: str) -> str:
    """RFC 9449 §4.2 ``ath``: the base64url SHA-256 of the ASCII access token."""
    return b64url(hashlib.sha256(token.encode("ascii", "surrogateescape")).digest())


def bound_thumbprint(claims: Mapping[str, Any]) -> str | None:
    """RFC 9449 §6.1/§6.2: ``cnf.jkt`` of the token's claims or introspection answer, if any; ``""``
    when ``cnf`` is not an object (RFC 7800 §3.1) or its ``jkt`` not a thumbprint: the issuer bound
    the token to something, so it is not read as unbound (fail closed)."""
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    if not isinstance(cnf, Mapping):
        return ""
    if "jkt" not in cnf:
        return None  # bound otherwise (x5t#S256, mTLS): not a DPoP binding
    jkt = cnf["jkt"]
    return jkt if isinstance(jkt, str) else ""


def _normal_path(path: str) -> str:
    """RFC 3986 §6.2.2: percent-encodings of unreserved characters decoded, the others in upper
    case; dot segments removed (§5.2.4); §6.2.3: an empty path is ``/``. Runs of ``/`` are one, as
    Kong's normalised path (``kong.request.get_path``, nginx's ``merge_slashes``) has them: the request
    Kong routes is the same either way."""
    out = bytearray()
    raw = path.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and _is_hex(raw[i + 1 : i + 3]):
            value = int(raw[i + 1 : i + 3], 16)
            out += bytes([value]) if value in _UNRESERVED else b"%" + raw[i + 1 : i + 3].upper()
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return _remove_dot_segments(re.sub("/{2,}", "/", out.decode("utf-8", "surrogateescape"))) or "/"


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, step by step."""
    rest, output = path, list[str]()
    while rest:
        if rest.startswith("../"):
            rest = rest[3:]
        elif rest.startswith("./"):
            rest = rest[2:]
        elif rest.startswith("/./"):
            rest = "/" + rest[3:]
        elif rest == "/.":
            rest = "/"
        elif rest.startswith("/../") or rest == "/..":
            rest = "/" + rest[4:]
            if output:
                output.pop()
        elif rest in (".", ".."):
            rest = ""
        else:
            end = rest.find("/", 1 if rest.startswith("/") else 0)
            segment, rest = (rest, "") if end < 0 else (rest[:end], rest[end:])
            output.append(segment)
    return "".join(output)


def normal_uri(uri: str) -> str | None:
    """An ``http(s)`` URI without query and fragment after RFC 3986 §6.2.2–§6.2.3 normalisation:
    scheme and host in lower case, the default port dropped, the path as :func:`_normal_path`.
    None for anything else (no host, userinfo, another scheme, a bad port)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{authority}{_normal_path(parts.path)}"


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof that passed every check of its own (§4.3): its key's thumbprint, and what makes it unique."""

    jkt: str
    jti: str
    iat: int


class NonceKeeper:
    """Stateless server nonces (RFC 9449 §9): ``base64url(nonce ‖ AES-GCM(issued-at))``."""

    def __init__(self, secret: str, lifetime: int, leeway: int, clock: Callable[[], float]) -> None:
        key = HKDF(hashes.SHA256(), 32, None, _NONCE_LABEL).derive(secret.encode())
        self.aead = AESGCM(key)
        self.lifetime, self.leeway, self.clock = lifetime, leeway, clock

    def issue(self) -> str:
        nonce = os.urandom(12)
        return b64url(nonce + self.aead.encrypt(nonce, struct.pack(">q", int(self.clock())), _NONCE_LABEL))

    def valid(self, value: object) -> bool:
        if not isinstance(value, str) or not 0 < len(value) <= 128:
            return False
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            (issued,) = struct.unpack(">q", self.aead.decrypt(raw[:12], raw[12:], _NONCE_LABEL))
        except (ValueError, InvalidTag, struct.error):
            return False
        age = self.clock() - int(issued)
        return -(self.leeway + FUTURE_SKEW) <= age <= self.lifetime


def nonce_secret(config: Config) -> str:
    """The secret every node has that nonces are sealed under: ``client_secret``, else the private
    ``client_jwk``; with ``dpop_use_nonce`` and neither, the config fails closed."""
    secret = config.client_secret or config.client_jwk
    if not secret:
        raise ConfigError(
            "dpop_use_nonce", "needs client_secret or a private client_jwk to seal nonces every node accepts"
        )
    return secret


def dpop_nonce_has_a_secret(config: Config) -> None:
    """Config check (behaviour §14.1): ``dpop_use_nonce`` needs a secret to seal nonces under."""
    if config.proof_of_possession_dpop != "off" and config.dpop_use_nonce:
        nonce_secret(config)


USED = "The DPoP proof was used before"
FORGOTTEN = "The DPoP proof is too old to be checked against replays"


class _Seen(TLRUCache[str, tuple[float, int]]):
    """A TLRU cache of ``(until, iat)`` that remembers, as ``horizon``, the latest ``iat`` of an
    entry it pushed out before it expired (it was full)."""

    horizon = -math.inf

    def popitem(self) -> tuple[str, tuple[float, int]]:
        key, (until, iat) = super().popitem()
        self.horizon = max(self.horizon, iat)
        return key, (until, iat)


class ProofMemory:
    """The proofs accepted within their lifetime (RFC 9449 §11.1), by a digest of their key's
    thumbprint and ``jti``: at most :data:`REPLAY_ENTRIES`, each until its proof expires. When it is
    full the oldest is forgotten, and from then on every proof issued (``iat``) no later than one
    forgotten is refused: it could be that one again. (By ``iat``, not by expiry: instances with
    a longer ``dpop_proof_lifetime`` share the memory.)

    The plugin server holds one, :data:`NODE_MEMORY`, for every plugin instance it runs: Kong starts
    an instance of the same config in each nginx worker and a new one on every reconfigure, so a
    memory per instance would let a proof through once per worker and again after any config
    change."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.lock = threading.Lock()
        self.seen = _Seen(REPLAY_ENTRIES, ttu=lambda _k, value, _n: value[0], timer=clock)

    def first_use(self, key: str, iat: int, until: float) -> str | None:
        """None when ``key`` was not seen before (it is remembered until ``until``), else the refusal's text."""
        with self.lock:
            if key in self.seen:
                return USED
            if iat <= self.seen.horizon:
                return FORGOTTEN
            self.seen[key] = (until, iat)
        return None


NODE_MEMORY = ProofMemory(time.time)


class ReplayCache:
    """The ``jti`` of every proof accepted within its lifetime (RFC 9449 §11.1): in ``memory``, per
    node, and with the cluster cache also in Redis (``claim``: SET NX), so a proof is used once
    across the cluster."""

    def __init__(self, clock: Callable[[], float], shared: Any = None, memory: ProofMemory | None = None) -> None:
        self.memory = memory if memory is not None else ProofMemory(clock)
        self.seen = self.memory.seen
        self.shared = shared

    def first_use(self, proof: Proof, until: float) -> str | None:
        """None for the proof's first use, else the refusal's text."""
        key = b64url(hashlib.sha256(f"{proof.jkt}\x00{proof.jti}".encode("utf-8", "surrogateescape")).digest())
        refused = self.memory.first_use(key, proof.iat, until)
        if refused is None and self.shared is not None and self.shared.claim("dpop_jti", key, until) is False:
            return USED
        return refused


class ProofChecker:
    """The checks of one proof against its request (module docstring)."""

    def __init__(
        self, config: Config, clock: Callable[[], float], shared: Any = None, memory: ProofMemory | None = None
    ) -> None:
        self.lifetime = config.dpop_proof_lifetime
        self.leeway = config.jwt_claims_leeway
        self.clock = clock
        self.nonces = (
            NonceKeeper(nonce_secret(config), self.lifetime, self.leeway, clock) if config.dpop_use_nonce else None
        )
        self.replay = ReplayCache(clock, shared, memory)

    def check(self, values: list[str], method: str, url: str, token: str) -> Proof:
        """The proof of ``values`` (the request's ``DPoP`` headers) for ``method`` on ``url`` with
        ``token``; raises InvalidDpopProof, or UseDpopNonce when a fresh nonce is needed."""
        if len(values) != 1:
            raise InvalidDpopProof("Exactly one DPoP header is required")
        proof = values[0].strip(" \t")
        if len(proof) > MAX_PROOF_BYTES or proof.count(".") != 2:
            raise InvalidDpopProof("The DPoP proof is not a JWS")
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError:
            raise InvalidDpopProof("The DPoP proof is not a JWS") from None
        typ, alg, jwk = header.get("typ"), header.get("alg"), header.get("jwk")
        if not isinstance(typ, str) or typ.lower() != PROOF_TYPE:
            raise InvalidDpopProof("The DPoP proof's typ is not dpop+jwt")
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGS:
            raise InvalidDpopProof("The DPoP proof's alg is not an allowed asymmetric algorithm")
        if not isinstance(jwk, dict):
            raise InvalidDpopProof("The DPoP proof has no jwk header")
        if _PRIVATE_MEMBERS & set(jwk):
            raise InvalidDpopProof("The DPoP proof's jwk is not a public key")
        if alg not in key_algorithms(jwk):
            raise InvalidDpopProof("The DPoP proof's alg does not fit its key")
        jkt, bound = thumbprint(jwk), bind_key(jwk)  # the rules of the authorization server's keys
        if jkt is None or bound is None or alg not in bound.algorithms:
            raise InvalidDpopProof("The DPoP proof's jwk is not a usable public key")
        try:
            claims = jwt.decode(
                proof,
                bound.key,
                algorithms=[alg],
                # the claims are checked below, by RFC 9449's rules, not PyJWT's registered-claim defaults
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },  # fmt: skip
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise InvalidDpopProof("The DPoP proof's signature is invalid") from None
        return self._claims(claims, jkt, method, url, token)

    def _claims(self, claims: dict[str, Any], jkt: str, method: str, url: str, token: str) -> Proof:
        jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise InvalidDpopProof("The DPoP proof has no usable jti")
        if htm != method:
            raise InvalidDpopProof("The DPoP proof's htm is not the request's method")
        target = normal_uri(htu) if isinstance(htu, str) else None
        if target is None or target != normal_uri(url):
            raise InvalidDpopProof("The DPoP proof's htu is not the request's URI")
        if self.nonces is not None and not self.nonces.valid(claims.get("nonce")):
            raise UseDpopNonce(self.nonces.issue())
        # JSON as Python reads it has NaN and Infinity: neither is a time
        if (
            isinstance(iat, bool)
            or not isinstance(iat, (int, float))
            or (isinstance(iat, float) and not math.isfinite(iat))
        ):
            raise InvalidDpopProof("The DPoP proof has no usable iat")
        now = self.clock()
        if iat < now - self.lifetime:
            raise InvalidDpopProof("The DPoP proof is too old")
        if iat > now + self.leeway + FUTURE_SKEW:
            raise InvalidDpopProof("The DPoP proof is issued in the future")
        if claims.get("ath") != access_token_hash(token):
            raise InvalidDpopProof("The DPoP proof's ath is not the access token's hash")
        return Proof(jkt, jti, int(iat))

    def first_use(self, proof: Proof) -> None:
        """Record the proof's ``jti``; raises InvalidDpopProof when it was used already (§11.1)."""
        refused = self.replay.first_use(proof, proof.iat + self.lifetime + self.leeway + FUTURE_SKEW)
        if refused is not None:
            raise InvalidDpopProof(refused)


def signing_algorithms() -> tuple[str, ...]:
    """``dpop_signing_alg_values_supported`` and the challenge's ``algs``: the access tokens' allow-list."""
    return ASYMMETRIC_ALGS
