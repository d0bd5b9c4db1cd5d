"""One request in, one decision out: the plugin's access-phase logic, free of kong-pdk.

The gateway asks its :class:`RequestView` only for what a decision needs, because each question
is a PDK round trip over the plugin-server socket (behaviour §11): the headers and the path
always, the method only on a metadata path, and the forwarded origin only when it must build a
challenge. So a rejected request costs at most five round trips and a metadata request three.

Fail closed (behaviour §2): a bad config answers every request with 500 and a log line naming
the field; no request is let through unless a :class:`TokenVerifier` accepted its token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import bearer, metadata
from .config import Config, parse_config
from .errors import (
    JSON,
    ConfigError,
    InvalidRequest,
    InvalidToken,
    LengthRequired,
    MethodNotAllowed,
    Misconfigured,
    PayloadTooLarge,
    Refusal,
    Response,
    json_body,
)


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


class NoVerifier:
    """Accepts no token at all: the only verifier until JWT and introspection validation exist."""

    def verify(self, token: str) -> Mapping[str, object]:
        raise InvalidToken("No token validation method is available on this gateway")


_PREFIX = "ai-mcp-oauth2: "


class Gateway:
    """The per-instance state and the decision for each request."""

    def __init__(self, raw_config: object, verifier: TokenVerifier | None = None) -> None:
        self.config: Config | None = None
        self.error: ConfigError | None = None
        self.metadata_body = b""
        self.verifier: TokenVerifier = verifier or NoVerifier()
        try:
            self.config = parse_config(raw_config)
            self.metadata_body = metadata.document(self.config)
        except ConfigError as exc:
            self.error = exc

    def handle(self, request: RequestView) -> Decision:
        config = self.config
        if config is None:
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
            self.verifier.verify(token)
        except Refusal as refusal:
            return render(refusal, config, request)
        return Proxy(clear_headers=() if config.passthrough_credentials else ("Authorization",))

    def _metadata(self, request: RequestView, headers: Mapping[str, Sequence[str]]) -> Response:
        method = request.method()
        if method in ("GET", "HEAD"):
            return metadata.metadata_response(self.metadata_body)
        if method == "OPTIONS":
            requested = headers.get("access-control-request-headers") or []
            return metadata.preflight_response(", ".join(requested) if requested else None)
        raise MethodNotAllowed()


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
