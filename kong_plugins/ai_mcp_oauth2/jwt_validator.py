"""Validating JWT access tokens against the issuer's keys (behaviour §5).

Rules, with the text they implement:

- RFC 7515 §5.2 / RFC 7519 §7.2: three base64url segments; the header and the claims are JSON
  objects. Duplicate member names are refused rather than resolved (RFC 7515 §5.2 allows
  either), so no two parsers can disagree on what a token says.
- RFC 8725 §3.1: the algorithm must be one the verifier allows, and match the key: only
  asymmetric algorithms (RS*, PS*, ES*, EdDSA), each key bound to its own (``jwks.py``);
  ``none`` and HS* are refused (§3.2, and HS* with keys from a JWKS is the classic confusion).
- RFC 8725 §3.10: keys come only from ``jwks_endpoint`` or the issuer's discovered ``jwks_uri``;
  ``jku``, ``x5u``, ``jwk`` and ``x5c`` in a token header are never used.
- RFC 7515 §4.1.11: a ``crit`` header is refused (no extension is understood here).
- RFC 9068 §4 / RFC 8725 §3.11: ``typ``, when present, must be ``JWT``, ``at+jwt`` or
  ``application/at+jwt`` (case-insensitive); many providers issue ``JWT``, so it is not required.
- RFC 7519 §4.1.4/§4.1.5/§4.1.6: ``exp`` is required and checked, ``nbf`` and an ``iat`` in the
  future are checked, all with ``jwt_claims_leeway``.
- RFC 9068 §4 / RFC 8725 §3.8: ``iss`` is required and must be one of ``authorization_servers``;
  the issuer is checked *before* any key is fetched, so a token cannot make the gateway contact a
  server.
- RFC 8707 §2, MCP authorization: ``aud`` (string or list) must contain ``resource`` unless
  ``insecure_relaxed_audience_validation``.

The claim rules themselves are :class:`~.claims.ClaimRules`, shared with introspection.

The token is parsed once; PyJWT's algorithm objects do the cryptography.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .claims import ClaimRules
from .discovery import Discovery
from .errors import InvalidToken, Unavailable
from .http import HttpClient, OutboundCallFailed
from .jwks import ALGORITHMS, KeySet
from .schema import Config

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")
_TYP = frozenset({"jwt", "at+jwt", "application/at+jwt"})


def _b64(segment: str) -> bytes:
    if not _SEGMENT.match(segment) or len(segment) % 4 == 1:
        raise InvalidToken("The access token is malformed")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("The access token is malformed") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate member")
        result[key] = value
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(_b64(segment).decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError, duplicate members, absurd nesting
        raise InvalidToken("The access token is malformed") from None
    if not isinstance(value, dict):
        raise InvalidToken("The access token is malformed")
    return value


class JwtValidator:
    """Checks JWT access tokens for one plugin instance."""

    def __init__(self, config: Config, http: HttpClient, clock: Callable[[], float]) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self.rules = ClaimRules(
            config, unusable=lambda name: InvalidToken(f"The access token's {name} claim is not a number")
        )
        self.discovery = Discovery(
            http,
            endpoint=config.metadata_discovery_endpoint,
            attempts=config.metadata_discovery_retry,
            ttl=config.metadata_cache_ttl,
            clock=clock,
        )
        self.keysets: dict[str, KeySet] = {}
        self.lock = threading.Lock()

    def _keyset(self, issuer: str) -> KeySet:
        uri: str
        if self.config.jwks_endpoint is not None:
            uri = self.config.jwks_endpoint
        else:
            try:
                jwks_uri = self.discovery.metadata(issuer).get("jwks_uri")
            except OutboundCallFailed:
                raise Unavailable("The authorization server's metadata could not be obtained") from None
            if not isinstance(jwks_uri, str):
                raise Unavailable("The authorization server's metadata has no usable jwks_uri")
            parts = urlsplit(jwks_uri)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise Unavailable("The authorization server's metadata has no usable jwks_uri")
            uri = jwks_uri
        with self.lock:
            keyset = self.keysets.get(uri)
            if keyset is None:
                # An issuer whose metadata names a new jwks_uri on every refresh must not grow this
                # without bound: keep the newest, two per authorization server (requests still
                # using a dropped key set finish with it).
                while len(self.keysets) >= 2 * len(self.config.authorization_servers):
                    del self.keysets[next(iter(self.keysets))]
                keyset = self.keysets[uri] = KeySet(uri, self.http, self.config.jwks_cache_ttl, self.clock)
        return keyset

    def validate(self, token: str) -> tuple[dict[str, Any], float]:
        """The token's claims and the time until which it may be trusted; raises a Refusal."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("The access token is not a JWT")
        header = _json_object(parts[0])
        claims = _json_object(parts[1])
        signature = _b64(parts[2])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise InvalidToken("The access token is signed with an algorithm this resource does not accept")
        if "crit" in header:
            raise InvalidToken("The access token has critical header parameters this resource does not understand")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYP):
            raise InvalidToken("The access token has an unacceptable typ")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("The access token is malformed")
        issuer = self.rules.trusted_issuer(claims.get("iss"))
        expires_at = self._check_times(claims)
        self.rules.check_audience(claims)
        try:
            keys = self._keyset(issuer).candidates(kid, alg)
        except OutboundCallFailed:
            raise Unavailable("The authorization server's keys could not be obtained") from None
        if not keys:
            raise InvalidToken("The access token's signing key is unknown")
        signing_input = (parts[0] + "." + parts[1]).encode("ascii")
        algorithm = ALGORITHMS[alg]
        if not any(algorithm.verify(signing_input, key.key, signature) for key in keys):
            raise InvalidToken("The access token's signature is invalid")
        return claims, expires_at

    def _check_times(self, claims: dict[str, Any]) -> float:
        now = self.clock()
        expires_at = self.rules.expires_at(claims, now)
        if expires_at is None:
            raise InvalidToken("The access token has no expiry")
        self.rules.check_not_before(claims, now)
        self.rules.check_issued_at(claims, now)
        return expires_at
