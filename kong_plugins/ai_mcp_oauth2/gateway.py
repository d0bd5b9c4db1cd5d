"""One request in, one decision out: the plugin's access-phase logic, free of kong-pdk.

The gateway asks its :class:`RequestView` only for what a decision needs, because each question
is a PDK round trip over the plugin-server socket (behaviour §11): the headers and the path
always, the method only on a metadata path, and the forwarded origin only when it must build a
challenge. So a rejected request costs at most five round trips and a metadata request three.

Fail closed (behaviour §2): a bad config answers every request with 500 and a log line naming
the field; no request is let through unless the :class:`TokenVerifier` accepted its token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import bearer, claims, metadata
from .config import Config, parse_config
from .errors import (
    JSON,
    ConfigError,
    InvalidRequest,
    LengthRequired,
    MethodNotAllowed,
    Misconfigured,
    PayloadTooLarge,
    Refusal,
    Response,
    json_body,
)
from .tokens import TokenValidator


class RequestView(Protocol):
    """What the gateway may ask about the current request (each call may cost a round trip)."""

    def headers(self) -> Mapping[str, Sequence[str]]: ...

    def path(self) -> str: ...

    def method(self) -> str: ...

    def forwarded_origin(self) -> tuple[object, object, object]:
        """Kong's forwarded scheme, host and port."""
        ...

    def log(self, level: str, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Proxy:
    """Let the request through, after these changes to the upstream request."""

    set_headers: Mapping[str, str] = field(default_factory=dict)
    clear_headers: tuple[str, ...] = ()


Decision = Response | Proxy


class TokenVerifier(Protocol):
    """Decides whether a bearer token is acceptable; raises a :class:`Refusal` if not."""

    def verify(self, token: str) -> Mapping[str, object]:
        """Return the token's claims, or raise InvalidToken (401) or Unavailable (503)."""
        ...


_PREFIX = "ai-mcp-oauth2: "


class Gateway:
    """The per-instance state and the decision for each request."""

    def __init__(
        self,
        raw_config: object,
        verifier_factory: Callable[[Config], TokenVerifier] = TokenValidator,
    ) -> None:
        self.config: Config | None = None
        self.error: ConfigError | None = None
        self.metadata_body = b""
        self.verifier: TokenVerifier | None = None
        try:
            self.config = parse_config(raw_config)
            self.metadata_body = metadata.document(self.config)
            self.verifier = verifier_factory(self.config)
        except ConfigError as exc:
            self.error = exc

    def handle(self, request: RequestView) -> Decision:
        config = self.config
        if config is None or self.verifier is None:
            assert self.error is not None
            request.log("err", f"{_PREFIX}invalid configuration, refusing all requests: {self.error}")
            return render(Misconfigured(), None, request)
        headers = request.headers()
        path = request.path()
        try:
            if path in config.metadata_paths:
                return self._metadata(request, headers)
            check_body_size(headers, config.max_request_body_size)
            token = bearer.extract_token(headers)
            token_claims = self.verifier.verify(token)
        except Refusal as refusal:
            return render(refusal, config, request)
        return upstream_changes(config, headers, token_claims)

    def _metadata(self, request: RequestView, headers: Mapping[str, Sequence[str]]) -> Response:
        method = request.method()
        if method in ("GET", "HEAD"):
            return metadata.metadata_response(self.metadata_body)
        if method == "OPTIONS":
            requested = headers.get("access-control-request-headers") or []
            return metadata.preflight_response(", ".join(requested) if requested else None)
        raise MethodNotAllowed()


def upstream_changes(
    config: Config, headers: Mapping[str, Sequence[str]], token_claims: Mapping[str, Any]
) -> Proxy:
    """Behaviour §8: claim headers set, client copies of absent ones removed, credentials stripped.

    A configured header is always overwritten when its claim is present (``set_headers``
    replaces every value); when the claim is absent, the header is removed only if the client
    sent it, so an honest request costs no extra round trip.
    """
    values: dict[str, str] = {}
    clear: list[str] = []
    for mapping in config.claim_headers:
        value = claims.header_value(claims.resolve(token_claims, mapping.path))
        if value is not None:
            values[mapping.header] = value
        elif mapping.header.lower() in headers:
            clear.append(mapping.header)
    if not config.passthrough_credentials:
        clear.append("Authorization")
    return Proxy(set_headers=values, clear_headers=tuple(clear))


def check_body_size(headers: Mapping[str, Sequence[str]], limit: int) -> None:
    """Behaviour §4: refuse a body above ``max_request_body_size`` (0 = no limit) before token work.

    The size is the declared ``Content-Length``; a body of unknown length (``Transfer-Encoding``)
    could exceed the limit unseen, so it is refused with 411 while a limit is set.
    """
    if limit <= 0:
        return
    lengths = headers.get("content-length") or []
    if lengths:
        values = {v.strip() for v in lengths}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise InvalidRequest("The Content-Length header is invalid")
        if int(next(iter(values))) > limit:
            raise PayloadTooLarge()
    elif headers.get("transfer-encoding"):
        raise LengthRequired()


def render(refusal: Refusal, config: Config | None, request: RequestView) -> Response:
    """The one exit point: a refusal becomes status, headers and JSON body (behaviour §4)."""
    headers = {"Content-Type": JSON, "Cache-Control": "no-store"}
    if refusal.challenges and config is not None:
        origin = metadata.origin(config, *request.forwarded_origin())
        headers["WWW-Authenticate"] = bearer.challenge(
            refusal.challenge_params(), origin + config.metadata_path, config.scopes_supported
        )
    headers.update(refusal.extra_headers())
    return Response(refusal.status, headers, json_body(refusal.error, refusal.description))
