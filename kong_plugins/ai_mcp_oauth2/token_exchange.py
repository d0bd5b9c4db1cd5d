"""RFC 8693 token exchange before the request reaches the upstream MCP server (behaviour §9).

- §2.1: ``POST`` form with ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``,
  ``subject_token`` (the validated inbound token) and ``subject_token_type``,
  ``requested_token_type``, ``actor_token`` with ``actor_token_type`` only when an actor token
  exists ("MUST NOT be included otherwise"), one ``audience`` parameter per entry, ``resource``
  (``token_exchange.request.resource``) and ``scope`` (``scopes`` joined by spaces). Parameters
  whose config value is null are not sent.
- Client authentication (RFC 6749 §2.3): ``client_secret_basic``, ``client_secret_post``,
  ``none``, or ``inherit`` (the top-level ``client_id``/``client_secret`` and ``client_auth``).
- §2.2.1: the response must carry ``access_token``; it goes upstream as ``Authorization: Bearer``,
  so the answer must also say that it is a token fit for that header:

  - ``issued_token_type`` is REQUIRED and must be the requested type (``requested_token_type``;
    the access-token type when that is unset, since the access token is what the gateway wants).
    An endpoint that answers with a refresh token or an ID token instead never has it forwarded.
  - ``token_type`` is REQUIRED. For an access token it is as in RFC 6749 §7.1, and it must be
    ``Bearer`` (case-insensitive, RFC 6749 §5.1). The same holds when the requested type is
    ``urn:ietf:params:oauth:token-type:jwt``: §3 lets a JWT be issued as an access token, and
    only as one (``token_type`` ``Bearer``) does it belong in a Bearer header; a JWT that is not
    an access token comes with ``token_type`` ``N_A`` (§2.2.1) and is refused. For any other
    requested type the operator asked for that type on purpose, and ``token_type`` (``N_A``
    for a token that is no access token) only has to be present.

  An answer that breaks these rules is the exchange failing, not the client's token: 503.
- Cache (``cache.enabled``): keyed by a hash of endpoint, client, subject token, actor token and
  request parameters; kept ``expires_in`` less a margin of 10 % (at most 10 s), or ``cache.ttl``
  when ``expires_in`` is absent. Concurrent identical exchanges are made once (behaviour §7.6), also
  for a request that missed the cache just as the exchange it needed ended. An ``expires_in``
  that is present but no usable number (RFC 6749 §5.1: seconds, a JSON number; not a string, not
  a 400-digit integer) makes the answer malformed: 503, cached or not. With the cluster cache
  (behaviour §13) an exchange this node has not cached is first looked up in Redis, under the
  subject and actor tokens, and one it makes is shared there until the same time.
- §2.2.2 errors: the endpoint refusing the subject or actor token (a 4xx such as ``invalid_grant``,
  ``invalid_request`` or ``invalid_target``) is a 401 ``invalid_token`` for the client; the endpoint
  refusing the gateway itself (``invalid_client``, ``unauthorized_client``,
  ``unsupported_grant_type``, or HTTP 401/403) and every failure of the server are a 503.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from .cache import ExpiringCache, SingleFlight
from .claims import number
from .client_auth import ClientAuth
from .cluster_cache import ClusterCache
from .errors import ConfigError, InvalidToken, Unavailable
from .http import HttpClient, OutboundCallFailed
from .schema import Config

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
_BEARER_TYPES = frozenset({ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE})  # requested types that must come as Bearer
_GATEWAY_REFUSED = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})
_HEADER_SAFE_TOKEN = re.compile(r"^[\x21-\x7e]{1,16384}$")


def actor_token_source_has_its_value(config: Config) -> None:
    """An actor token from a header needs the header's name; from config, the token (RFC 8693 §2.1)."""
    exchange = config.token_exchange
    request = exchange.request
    if not exchange.enabled:
        return
    if request.actor_token_source == "header" and not request.actor_token_header:
        raise ConfigError("token_exchange.request.actor_token_header", "required when actor_token_source is header")
    if request.actor_token_source == "config" and not request.actor_token:
        raise ConfigError("token_exchange.request.actor_token", "required when actor_token_source is config")


class TokenExchanger:
    """Trades validated inbound tokens for upstream tokens at ``token_exchange.token_endpoint``."""

    def __init__(
        self, config: Config, http: HttpClient, clock: Callable[[], float], shared: ClusterCache | None = None
    ) -> None:
        self.exchange_config = config.token_exchange
        self.endpoint = config.token_exchange.token_endpoint or ""
        self.requested_type = config.token_exchange.request.requested_token_type or ACCESS_TOKEN_TYPE
        self.http = http
        self.clock = clock
        self.client = ClientAuth.for_exchange(config, clock)
        self.cache: ExpiringCache[bytes, str] | None = (
            ExpiringCache(clock, name="exchange") if config.token_exchange.cache.enabled else None
        )
        self.flight = SingleFlight()
        self.shared = shared if shared is not None and shared.shares("token_exchange") else None

    def close(self) -> None:
        """Release the exchanger's resources: the mTLS key's memory files (``inherit`` with a TLS
        method) and pooled connections. Idempotent; call it only when no request uses it any more."""
        self.client.close()
        self.http.close()

    def form(self, subject_token: str, actor_token: str | None) -> list[tuple[str, str]]:
        request = self.exchange_config.request
        form = [("grant_type", GRANT_TYPE), ("subject_token", subject_token),
                ("subject_token_type", request.subject_token_type)]  # fmt: skip
        if request.requested_token_type:
            form.append(("requested_token_type", request.requested_token_type))
        if actor_token:
            form += [("actor_token", actor_token), ("actor_token_type", request.actor_token_type)]
        form += [("audience", audience) for audience in request.audience]
        if request.resource:
            form.append(("resource", request.resource))
        if request.scopes:
            form.append(("scope", " ".join(request.scopes)))
        return form

    def exchange(self, subject_token: str, actor_token: str | None) -> str:
        """The exchanged access token; raises InvalidToken (401) or Unavailable (503)."""
        form = self.form(subject_token, actor_token)
        key = hashlib.sha256(
            json.dumps([self.endpoint, self.client.method, self.client.client_id, form]).encode()
        ).digest()
        cached = self._cached(key)
        if cached is not None:
            return cached
        # The leader looks again: an exchange that ended after this request missed may have stored it.
        secrets = (subject_token, actor_token or "")
        return self.flight.do(key, lambda: self._cached(key) or self._load(key, form, secrets))

    def _cached(self, key: bytes) -> str | None:
        return self.cache.get(key) if self.cache is not None else None

    def _load(self, key: bytes, form: list[tuple[str, str]], secrets: tuple[str, str]) -> str:
        if self.shared is None:
            token, until = self._exchange(form)
        else:
            slot = self.shared.slot("token_exchange", secrets)
            token, until = self.shared.through(slot, lambda: self._exchange(form), _share, _reuse)
        if self.cache is not None and until > self.clock():
            self.cache.put(key, token, until=until)
        return token

    def _exchange(self, form: list[tuple[str, str]]) -> tuple[str, float]:
        """The exchanged token and until when it may be reused."""
        client = self.client.prepare(self.endpoint, mtls_alias=False)
        try:
            response = self.http.request(
                "POST",
                client.url,
                data=[*client.form, *form],
                headers=client.headers,
                cert=client.cert,
                verify=client.verify,
                kind="exchange",
            )
        except OutboundCallFailed:
            raise Unavailable("The token exchange endpoint could not be reached") from None
        try:
            answer: Any = response.json()
        except OutboundCallFailed:
            answer = None
        if response.status != 200:
            error = answer.get("error") if isinstance(answer, dict) else None
            if 400 <= response.status < 500 and response.status not in (401, 403) and error not in _GATEWAY_REFUSED:
                raise InvalidToken("The access token could not be exchanged for the upstream")
            raise Unavailable("The token exchange endpoint refused the gateway or failed")
        if not isinstance(answer, dict):
            raise Unavailable("The token exchange answer is not a JSON object")
        token = answer.get("access_token")
        if not isinstance(token, str) or not _HEADER_SAFE_TOKEN.match(token):
            raise Unavailable("The token exchange answer has no usable access_token")
        self._check_types(answer)
        return token, self.clock() + self._ttl(answer.get("expires_in"))

    def _check_types(self, answer: dict[str, Any]) -> None:
        """§2.2.1: the issued token is of the requested type, and a Bearer token if it is to be one."""
        if answer.get("issued_token_type") != self.requested_type:
            raise Unavailable("The token exchange answer's issued_token_type is not the requested type")
        token_type = answer.get("token_type")
        if not isinstance(token_type, str):
            raise Unavailable("The token exchange answer has no token_type")
        if self.requested_type in _BEARER_TYPES and token_type.lower() != "bearer":
            raise Unavailable("The token exchange answer's token_type is not Bearer")

    def _ttl(self, expires_in: Any) -> float:
        if expires_in is None:
            return float(self.exchange_config.cache.ttl)
        seconds = number(expires_in)
        if seconds is None:
            raise Unavailable("The token exchange answer's expires_in is not a number")
        return seconds - min(10.0, seconds * 0.1)


def _share(entry: tuple[str, float]) -> tuple[str, float]:
    return entry


def _reuse(token: Any, until: float) -> tuple[str, float] | None:
    """Another node's exchanged token, if it is still one this node would forward."""
    if not isinstance(token, str) or not _HEADER_SAFE_TOKEN.match(token):
        return None
    return token, until
