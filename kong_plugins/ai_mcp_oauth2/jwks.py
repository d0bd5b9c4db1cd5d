"""JSON Web Key Sets: parsing, binding each key to its algorithms, caching and refetching.

- RFC 7517 §4.2/§4.3: a key whose ``use`` is not ``sig``, or whose ``key_ops`` lacks ``verify``,
  is not used to verify signatures.
- RFC 8725 §3.1: "each key MUST be used with exactly one algorithm": a key is bound to its own
  ``alg`` when the JWK names one, otherwise to the algorithms of its ``kty``/``crv`` (RSA: RS*
  and PS*; EC P-256/384/521: ES256/384/512; OKP Ed25519/Ed448: EdDSA). Symmetric (``oct``)
  keys and ``none`` are never used; RSA keys shorter than 2048 bits are refused (RFC 7518 §3.3).
  A key that cannot be used is skipped; the rest of the set still counts.
- Behaviour §5: the set is cached ``jwks_cache_ttl`` seconds; an unknown ``kid`` refetches it
  at most once per :data:`REFRESH_COOLDOWN` seconds, concurrent requests sharing the one fetch;
  a failed fetch keeps the keys already held.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import Algorithm, get_default_algorithms

from .http import HttpClient, SingleFlight, Unreachable

REFRESH_COOLDOWN = 10.0
FAILURE_BACKOFF = 5.0
MAX_KEYS = 100
ALGORITHMS: dict[str, Algorithm] = {
    name: alg
    for name, alg in get_default_algorithms().items()
    if name in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
}
_BY_KTY: dict[tuple[Any, Any], tuple[str, ...]] = {
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("EC", "P-521"): ("ES512",),
    ("OKP", "Ed25519"): ("EdDSA",),
    ("OKP", "Ed448"): ("EdDSA",),
}


@dataclass(frozen=True, slots=True)
class BoundKey:
    """A verification key and the algorithms it may be used with."""

    kid: str | None
    algorithms: frozenset[str]
    key: Any


def bind_key(jwk: Any) -> BoundKey | None:
    """Turn one JWK into a :class:`BoundKey`, or None when it may not verify signatures."""
    if not isinstance(jwk, dict):
        return None
    if jwk.get("use") not in (None, "sig"):
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    kty = jwk.get("kty")
    crv = jwk.get("crv") if kty != "RSA" else None
    allowed = _BY_KTY.get((kty, crv))
    if allowed is None:
        return None
    alg = jwk.get("alg")
    if alg is not None:
        if alg not in allowed:
            return None
        allowed = (alg,)
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    try:
        key = ALGORITHMS[allowed[0]].from_jwk(jwk)
    except Exception:  # noqa: BLE001 - any malformed key is skipped, never fatal
        return None
    if hasattr(key, "private_bytes"):  # a published private key: refuse to use it at all
        return None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        return None
    return BoundKey(kid, frozenset(allowed), key)


def parse_jwks(document: Any) -> list[BoundKey]:
    """The usable keys of a JWKS document (RFC 7517 §5); raises Unreachable if it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise Unreachable("the JWKS document has no keys array")
    keys = [bound for jwk in document["keys"][:MAX_KEYS] if (bound := bind_key(jwk)) is not None]
    return keys


class KeySet:
    """The cached keys of one ``jwks_uri``."""

    def __init__(self, uri: str, http: HttpClient, ttl: float, clock: Callable[[], float]) -> None:
        self.uri = uri
        self.http = http
        self.ttl = ttl
        self.clock = clock
        self.keys: list[BoundKey] | None = None
        self.fetched_at = 0.0
        self.last_attempt = float("-inf")
        self.last_failure = float("-inf")
        self.flight = SingleFlight()
        self.lock = threading.Lock()

    def _fetch(self) -> None:
        self.last_attempt = self.clock()
        try:
            response = self.http.get(self.uri)
            if response.status != 200:
                raise Unreachable(f"JWKS answered {response.status}")
            keys = parse_jwks(response.json())
        except Unreachable:
            self.last_failure = self.clock()
            raise
        with self.lock:
            self.keys = keys
            self.fetched_at = self.clock()

    def _refresh(self) -> None:
        self.flight.do("fetch", self._fetch)

    def candidates(self, kid: str | None, alg: str) -> list[BoundKey]:
        """Keys that may verify a token with this ``kid`` and ``alg``; refetches when due.

        Raises Unreachable when no keys were ever obtained (a 503, not a 401).
        """
        now = self.clock()
        if self.keys is None or now - self.fetched_at >= self.ttl:
            if now - self.last_failure < FAILURE_BACKOFF:
                if self.keys is None:
                    raise Unreachable("the JWKS could not be fetched recently")
            else:
                try:
                    self._refresh()
                except Unreachable:
                    if self.keys is None:
                        raise
        found = self._match(kid, alg)
        if not found and self.clock() - self.last_attempt >= REFRESH_COOLDOWN:
            # A failed refetch raises (503: the key may exist but cannot be had); the keys
            # already held stay in use for other tokens.
            self._refresh()
            found = self._match(kid, alg)
        return found

    def _match(self, kid: str | None, alg: str) -> list[BoundKey]:
        keys = self.keys or []
        return [k for k in keys if (kid is None or k.kid == kid) and alg in k.algorithms]
