"""The token verifier of a plugin instance: JWT or introspection, behind a cache of validated tokens.

Behaviour §5/§6: introspection is used whenever ``introspection_endpoint`` is set, JWT
validation otherwise. Behaviour §11: a token already validated is not verified again until it
expires; the cache is bounded and keyed by the token's SHA-256, so no token is kept in memory
as such. Concurrent requests with the same new token share one introspection (behaviour §7.6),
including a request that missed the cache just as an introspection of its token ended. With the
cluster cache (behaviour §13), an introspection this node has not cached is first looked up in
Redis, and one it makes is shared there; a shared answer is checked again by this node's claim rules
and kept locally only for the time it has left.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from .cache import ExpiringCache, SingleFlight
from .cluster_cache import ClusterCache
from .errors import InvalidToken, Refusal
from .http import HttpClient
from .introspection import Introspector
from .jwt_validator import JwtValidator
from .schema import Config

Entry = tuple[dict[str, Any] | None, float]


class CachingTokenVerifier:
    """The :class:`~.gateway.TokenVerifier` of one plugin instance: JWT validation or introspection,
    behind the cache of validated tokens."""

    def __init__(
        self,
        config: Config,
        http: HttpClient | None = None,
        clock: Callable[[], float] = time.time,
        shared: ClusterCache | None = None,
    ) -> None:
        self.http = http or HttpClient(config)
        self.clock = clock
        self.cache: ExpiringCache[bytes, Entry] = ExpiringCache(clock, name="tokens")
        self.flight = SingleFlight()
        self.introspector = Introspector(config, self.http, clock) if config.introspection_endpoint else None
        self.jwt = None if self.introspector else JwtValidator(config, self.http, clock)
        self.cache_results = config.cache_introspection if self.introspector else True
        self.shared = shared if shared is not None and shared.shares("introspection") else None

    def close(self) -> None:
        """Release the instance's resources: the mTLS key's memory files and pooled connections.

        Idempotent; call it only when no request uses the validator any more.
        """
        if self.introspector is not None:
            self.introspector.close()
        self.http.close()

    def verify(self, token: str) -> Mapping[str, Any]:
        key = hashlib.sha256(token.encode()).digest()
        entry = self.cache.get(key)
        if entry is None:
            if self.introspector is not None:
                # A network call: concurrent requests share it, and its leader looks again, since
                # an introspection that ended after this request missed the cache may have stored it.
                entry = self.flight.do(key, lambda: self.cache.get(key) or self._validate(key, token))
            else:  # local work; the key set fetch it may need is shared inside KeySet
                entry = self._validate(key, token)
        claims = entry[0]
        if claims is None:
            raise InvalidToken("The access token is not active")
        return claims

    def _validate(self, key: bytes, token: str) -> Entry:
        if self.introspector is not None:
            entry: Entry = self._introspect(token)
        else:
            assert self.jwt is not None
            entry = self.jwt.validate(token)
        if self.cache_results and entry[1] > self.clock():
            self.cache.put(key, entry, until=entry[1])
        return entry

    def _introspect(self, token: str) -> Entry:
        assert self.introspector is not None
        if self.shared is None:
            return self.introspector.introspect(token)
        slot = self.shared.slot("introspection", [token])
        return self.shared.through(slot, lambda: self.introspector.introspect(token), _share, self._reuse)  # type: ignore[union-attr]

    def _reuse(self, claims: Any, until: float) -> Entry | None:
        """Another node's answer, if this node's claim rules still accept it (else it is asked again)."""
        assert self.introspector is not None
        if not isinstance(claims, dict):
            return None
        try:
            trusted = self.introspector.trusted_until(claims, self.clock())
        except Refusal:
            return None
        return claims, min(until, trusted)


def _share(entry: Entry) -> tuple[Any, float] | None:
    """Only active answers are shared (behaviour §13.3)."""
    claims, until = entry
    return None if claims is None else (claims, until)
