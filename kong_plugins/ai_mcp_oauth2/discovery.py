"""Finding an issuer's metadata: RFC 8414 and OpenID Connect Discovery 1.0.

- RFC 8414 §3: ``/.well-known/oauth-authorization-server`` is inserted between the host and the
  path of the issuer; §3.3: the ``issuer`` in the answer MUST be identical to the issuer the URL
  was built from, or the metadata MUST NOT be used.
- OpenID Connect Discovery §4: ``{issuer}/.well-known/openid-configuration``; §4.3: same issuer
  rule. MCP authorization 2025-11-25 has clients try, for an issuer with a path, the RFC 8414
  inserted form, then the OpenID inserted form, then the OpenID appended form (without a path:
  the first two). The plugin follows that order, or uses ``metadata_discovery_endpoint`` alone.
- ``metadata_discovery_retry`` is how many times each URL is tried when the server fails
  (connection error, timeout, 5xx); a 404 or another 4xx moves on to the next URL at once.
- Found metadata is cached ``metadata_cache_ttl`` seconds; a failure is remembered for
  :data:`~.cache.FAILURE_BACKOFF` seconds so that a down server is not asked again on every request, and
  metadata already held is used meanwhile. Behaviour §7.6: concurrent requests share one
  discovery, and its leader first looks at the cache again, so a request that found the cache
  expired just as another discovery ended or failed uses that outcome instead of asking again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import metrics
from .cache import FailureBackoff, SingleFlight
from .claims import same_identifier
from .http import HttpClient, OutboundCallFailed

OAUTH = "/.well-known/oauth-authorization-server"
OPENID = "/.well-known/openid-configuration"


def candidate_urls(issuer: str) -> list[str]:
    """The discovery URLs for an issuer, in MCP 2025-11-25's order."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(p: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, p, "", ""))

    if not path:
        return [at(OAUTH), at(OPENID)]
    return [at(OAUTH + path), at(OPENID + path), at(path + OPENID)]


class Discovery:
    """Cached issuer metadata for the plugin instance's authorization servers."""

    def __init__(
        self,
        http: HttpClient,
        *,
        endpoint: str | None,
        attempts: int,
        ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self.http = http
        self.endpoint = endpoint
        self.attempts = max(1, attempts)
        self.ttl = ttl
        self.clock = clock
        self.cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self.failures = FailureBackoff(clock)
        self.flight = SingleFlight()

    def metadata(self, issuer: str) -> dict[str, Any]:
        """The issuer's metadata; raises OutboundCallFailed when it cannot be had (a 503)."""
        known = self._known(issuer)
        if known is not None:
            return known
        return self.flight.do(issuer, lambda: self._discover(issuer))

    def _known(self, issuer: str) -> dict[str, Any] | None:
        """Metadata that needs no discovery now: fresh, or held while a failure is remembered.

        None when it must be discovered; raises OutboundCallFailed within the backoff with nothing held.
        """
        now = self.clock()
        cached = self.cache.get(issuer)
        fresh = cached is not None and now - cached[0] < self.ttl
        metrics.sink.lookup("discovery", "local", "hit" if fresh else "miss")
        if fresh and cached is not None:
            return cached[1]
        if self.failures.backing_off(issuer, now):
            if cached is not None:
                return cached[1]
            raise OutboundCallFailed("discovery failed recently")
        return None

    def _discover(self, issuer: str) -> dict[str, Any]:
        """Run by the leader of the shared discovery; the outcome is recorded before it ends."""
        known = self._known(issuer)  # another discovery may have ended since this request looked
        if known is not None:
            return known
        urls = [self.endpoint] if self.endpoint else candidate_urls(issuer)
        for url in urls:
            document = self._fetch(url)
            if document is None:
                continue
            if not isinstance(document.get("issuer"), str) or not same_identifier(document["issuer"], issuer):
                continue  # RFC 8414 §3.3: MUST NOT be used
            self.cache[issuer] = (self.clock(), document)
            self.failures.forget(issuer)
            return document
        self.failures.failed(issuer)
        cached = self.cache.get(issuer)
        if cached is not None:
            return cached[1]  # stale metadata beats none while the server is down
        raise OutboundCallFailed("no usable metadata was found for the issuer")

    def _fetch(self, url: str) -> dict[str, Any] | None:
        for _ in range(self.attempts):
            try:
                response = self.http.get(url, kind="discovery")
            except OutboundCallFailed:
                continue
            if response.status >= 500:
                continue
            if response.status != 200:
                return None
            try:
                document = response.json()
            except OutboundCallFailed:
                return None
            return document if isinstance(document, dict) else None
        return None
