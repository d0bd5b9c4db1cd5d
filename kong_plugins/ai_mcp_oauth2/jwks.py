"""JSON Web Key Sets: parsing, binding each key to its algorithms, caching and refetching.

- RFC 7517 §4.2/§4.3: a key whose ``use`` is not ``sig``, or whose ``key_ops`` lacks ``verify``,
  is not used to verify signatures.
- RFC 8725 §3.1: "each key MUST be used with exactly one algorithm": a key is bound to its own
  ``alg`` when the JWK names one, otherwise to the algorithms of its ``kty``/``crv`` (RSA: RS*
  and PS*; EC P-256/384/521: ES256/384/512; OKP Ed25519/Ed448: EdDSA). Symmetric (``oct``)
  keys and ``none`` are never used; RSA keys shorter than 2048 bits are refused (RFC 7518 §3.3).
  A key that cannot be used is skipped; the rest of the set still counts.
- A JWK with private members (RFC 7518 §6.2.2/§6.3.2, RFC 8037 §2: ``d``, ``p``, ``q``, ``dp``,
  ``dq``, ``qi``, ``oth``, ``k``) is skipped *before* it is parsed, and an RSA modulus above
  :data:`MAX_RSA_BITS` or an exponent above 32 bits is too: parsing an RSA private key without its
  primes makes cryptography factor the modulus from ``d``, one call that never yields (seconds to
  minutes of CPU for a 16 KB JWK), which would stall every request of the plugin server until
  Kong gives up and proxies them.
- Behaviour §5: the set is cached ``jwks_cache_ttl`` seconds; a failed fetch keeps the keys
  already held and is not retried for :data:`~.cache.FAILURE_BACKOFF` seconds. An unknown ``kid`` (a key
  rotated in) refetches the set at most once per :data:`REFRESH_COOLDOWN` seconds, so tokens with
  made-up kids cannot make the gateway hammer the server. Behaviour §7.6: concurrent requests
  share one fetch; a request that finds no key waits for the fetch in flight, or uses the keys
  of one that completed since it looked, before it refuses (401); when the latest fetch failed
  it is a 503, since the key may exist.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import Algorithm, get_default_algorithms

from . import metrics
from .cache import FailureBackoff, SingleFlight
from .http import HttpClient, OutboundCallFailed

REFRESH_COOLDOWN = 10.0
MAX_RSA_BITS = 8192
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MAX_KEYS = 100
# RFC 7518 §3.1 and RFC 8037 §3.1: the asymmetric algorithms each kind of key may be used with, the
# first one a key's default. The one declaration of the algorithms tokens and client assertions may use.
_BY_KTY: dict[tuple[Any, Any], tuple[str, ...]] = {
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("EC", "P-521"): ("ES512",),
    ("OKP", "Ed25519"): ("EdDSA",),
    ("OKP", "Ed448"): ("EdDSA",),
}
ASYMMETRIC_ALGS = tuple(sorted({alg for algs in _BY_KTY.values() for alg in algs}))
ALGORITHMS: dict[str, Algorithm] = {
    name: alg for name, alg in get_default_algorithms().items() if name in ASYMMETRIC_ALGS
}


def key_algorithms(jwk: Mapping[str, Any]) -> tuple[str, ...]:
    """The algorithms a JWK's ``kty`` (and ``crv``) may be used with, its default first; () if none."""
    kty, crv = jwk.get("kty"), jwk.get("crv") if jwk.get("kty") != "RSA" else None
    if not isinstance(kty, str) or not isinstance(crv, (str, type(None))):
        return ()  # members of the wrong type (a list cannot even be looked up)
    return _BY_KTY.get((kty, crv), ())


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
    allowed = key_algorithms(jwk)
    if not allowed:
        return None
    alg = jwk.get("alg")
    if alg is not None:
        if alg not in allowed:
            return None
        allowed = (alg,)
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        return None  # a published private key: never parsed, never used
    if (kty == "RSA" and not _small_enough(jwk.get("n"), MAX_RSA_BITS)) or not _small_enough(jwk.get("e"), 32):
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


def _small_enough(value: Any, bits: int) -> bool:
    """Whether an absent or base64url-encoded integer member is at most ``bits`` long (its length
    is checked before anything is decoded)."""
    if value is None:
        return True
    if not isinstance(value, str) or len(value) > -(-bits // 6):
        return False
    try:
        number = int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")
    except (binascii.Error, ValueError):
        return False
    return number.bit_length() <= bits


def parse_jwks(document: Any) -> list[BoundKey]:
    """The usable keys of a JWKS document (RFC 7517 §5); raises OutboundCallFailed if it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise OutboundCallFailed("the JWKS document has no keys array")
    keys = [bound for jwk in document["keys"][:MAX_KEYS] if (bound := bind_key(jwk)) is not None]
    return keys


class KeySet:
    """The cached keys of one ``jwks_uri``.

    Every completed fetch, successful or not, increments :attr:`generation`. A request notes the
    generation of the keys it looked at; whoever then leads the shared fetch first checks that
    no fetch completed since, so a request that arrives as a fetch ends re-matches against the
    keys it brought instead of fetching again, or refusing because the cooldown clock moved.
    """

    def __init__(self, uri: str, http: HttpClient, ttl: float, clock: Callable[[], float]) -> None:
        self.uri = uri
        self.http = http
        self.ttl = ttl
        self.clock = clock
        self.keys: list[BoundKey] | None = None
        self.fetched_at = 0.0
        self.last_attempt = float("-inf")
        self.failures = FailureBackoff(clock)
        self.failed = False  # the latest fetch failed
        self.generation = 0
        self.flight = SingleFlight()
        self.lock = threading.Lock()

    def _fetch(self, seen: int, cooldown: bool) -> None:
        """Run by the leader of the shared fetch: fetch, unless a fetch completed since the request
        looked (generation ``seen``), or, for an unknown kid, the cooldown has not elapsed."""
        with self.lock:
            now = self.clock()
            if self.generation != seen or (cooldown and now - self.last_attempt < REFRESH_COOLDOWN):
                return
            self.last_attempt = now
        keys: list[BoundKey] | None = None
        try:
            response = self.http.get(self.uri, kind="jwks")
            if response.status != 200:
                raise OutboundCallFailed(f"JWKS answered {response.status}")
            keys = parse_jwks(response.json())
        finally:
            with self.lock:
                self.generation += 1
                self.failed = keys is None
                if keys is None:
                    self.failures.failed(self.uri)
                else:
                    self.keys = keys
                    self.fetched_at = self.clock()

    def candidates(self, kid: str | None, alg: str) -> list[BoundKey]:
        """Keys that may verify a token with this ``kid`` and ``alg``; refetches when due.

        An empty list is a 401. Raises OutboundCallFailed (a 503) when no keys were ever obtained, or
        when the key is unknown and the latest fetch failed.
        """
        with self.lock:
            seen, keys, fetched_at = self.generation, self.keys, self.fetched_at
            now = self.clock()
            backing_off = self.failures.backing_off(self.uri, now)
        due = keys is None or now - fetched_at >= self.ttl
        metrics.sink.lookup("jwks", "local", "miss" if due else "hit")
        if due:
            if not backing_off:
                try:
                    self.flight.do("fetch", lambda: self._fetch(seen, cooldown=False))
                except OutboundCallFailed:
                    pass  # the keys already held stay in use
                with self.lock:
                    seen, keys = self.generation, self.keys
            if keys is None:
                raise OutboundCallFailed("the JWKS could not be fetched")
        while True:
            found = _match(keys, kid, alg)
            if found:
                return found
            led = False

            def refetch() -> None:
                nonlocal led
                led = True
                self._fetch(seen, cooldown=True)

            # Joins the fetch in flight if there is one; a failed fetch raises here (503).
            self.flight.do("fetch", refetch)
            with self.lock:
                generation, keys, failed = self.generation, self.keys, self.failed
            if led or generation != seen:
                found = _match(keys, kid, alg)
                if not found and failed:
                    raise OutboundCallFailed("the JWKS could not be refetched")
                return found
            # It waited on a request that had nothing to do for an older key set: decide anew.


def _match(keys: list[BoundKey] | None, kid: str | None, alg: str) -> list[BoundKey]:
    return [k for k in keys or [] if (kid is None or k.kid == kid) and alg in k.algorithms]
