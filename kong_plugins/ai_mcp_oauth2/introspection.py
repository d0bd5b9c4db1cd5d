"""RFC 7662 token introspection (behaviour §6), used whenever ``introspection_endpoint`` is set.

- §2.1: ``POST`` form ``token`` and ``token_type_hint=access_token``, plus ``args``, with
  ``headers``, authenticated per ``client_auth`` (``client_auth.py``).
- §2.2: ``active`` is REQUIRED; only ``"active": true`` is accepted. ``exp``, ``nbf``, ``iss`` and
  ``aud`` are checked as for JWTs when present; a missing ``aud`` is refused unless audience
  validation is relaxed (MCP authorization: tokens must be issued for this resource). ``exp`` and
  ``nbf`` are integer timestamps (§2.2): one that is present but is no usable number (a string,
  a 400-digit integer) is the server's malformed answer, a 503 like any other.
- §2.3: the server refusing the gateway's own credentials (401/403) is the gateway's problem,
  not the client's: 503, like any failure of the server (5xx, timeouts, non-JSON answers). A 400
  ``unsupported_token_type`` or ``invalid_token`` is about the token: 401.
- §4: results are cached (``cache_introspection``) by a hash of the token: an active one until
  its ``exp`` and at most one hour without one; an inactive one for
  :data:`INACTIVE_TTL` seconds; errors never.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .claims import ClaimRules
from .client_auth import ClientAuth
from .errors import InvalidToken, Unavailable
from .http import HttpClient, HttpResponse, OutboundCallFailed
from .schema import Config

MAX_TTL_WITHOUT_EXP = 3600.0
INACTIVE_TTL = 5.0
TOKEN_ERRORS = frozenset({"unsupported_token_type", "invalid_token"})


def _error(response: HttpResponse) -> object:
    try:
        answer = response.json()
    except OutboundCallFailed:
        return None
    return answer.get("error") if isinstance(answer, dict) else None


class Introspector:
    """Asks the authorization server about opaque (or any) tokens."""

    def __init__(self, config: Config, http: HttpClient, clock: Callable[[], float]) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self.client = ClientAuth(config, clock)
        # §2.2 ``exp``/``nbf`` that is no usable number: the server's fault, not the token's.
        self.rules = ClaimRules(
            config, unusable=lambda name: Unavailable(f"The introspection answer's {name} is not a number")
        )
        self.endpoint = config.introspection_endpoint or ""

    def close(self) -> None:
        """Release the client credentials' resources (the mTLS key's memory files); idempotent."""
        self.client.close()

    def introspect(self, token: str) -> tuple[dict[str, Any] | None, float]:
        """``(claims, trusted_until)`` for an active token, ``(None, until)`` for an inactive one.

        Raises Unavailable when the server cannot give an answer.
        """
        client = self.client.prepare(self.endpoint)
        form = [*self.config.args, *client.form, ("token", token), ("token_type_hint", "access_token")]
        headers = {**dict(self.config.headers), **client.headers}
        try:
            response = self.http.request(
                "POST",
                client.url,
                data=form,
                headers=headers,
                cert=client.cert,
                verify=client.verify,
                kind="introspection",
            )
        except OutboundCallFailed:
            raise Unavailable("The authorization server could not be reached") from None
        if response.status in (401, 403):
            raise Unavailable("The authorization server refused the gateway's credentials")
        if response.status == 400 and _error(response) in TOKEN_ERRORS:
            # Not RFC 7662 (which answers {"active": false}), but what some servers do for tokens
            # they will not introspect, e.g. oidc-provider 9 for its own JWT access tokens.
            raise InvalidToken("The authorization server does not accept this access token")
        if response.status != 200:
            raise Unavailable("The authorization server could not introspect the token")
        try:
            answer = response.json()
        except OutboundCallFailed:
            raise Unavailable("The authorization server's introspection answer is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise Unavailable("The authorization server's introspection answer is malformed")
        now = self.clock()
        if answer["active"] is not True:
            return None, now + INACTIVE_TTL
        return answer, self.trusted_until(answer, now)

    def trusted_until(self, claims: dict[str, Any], now: float) -> float:
        """Until when an active answer's claims are trusted, after the JWT claim rules for the claims
        it carries (``aud``, unless relaxed, must be there; the others may be absent); raises a
        Refusal when they fail. Also applied to an answer another node shared (behaviour §13.2)."""
        expires_at = self.rules.expires_at(claims, now)
        self.rules.check_not_before(claims, now)
        if claims.get("iss") is not None:
            self.rules.trusted_issuer(claims["iss"])
        self.rules.check_audience(claims)
        cap = now + MAX_TTL_WITHOUT_EXP
        return min(expires_at, cap) if expires_at is not None else cap
