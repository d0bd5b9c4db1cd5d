"""Typed errors and the responses they render to.

Every refusal the plugin makes is a value of one of these classes, turned into a response at a
single exit point (``gateway.py``). A refusal caused by the client (401, 400, 413) is never
confused with one caused by the infrastructure (503) or by the plugin itself (500):

- RFC 6750 §3: a request that lacks credentials gets a challenge *without* an error code;
  ``invalid_request`` is a 400, ``invalid_token`` a 401.
- MCP authorization (2025-06-18, 2025-11-25): every 401 carries ``resource_metadata``
  (RFC 9728 §5.1) so that clients can find the authorization server.

Texts placed in a header are limited to RFC 6750 §3's character set (printable ASCII without
``"`` and ``\\``); no error text ever contains a token, secret or key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# RFC 6750 §3: error, error_description and scope values are %x20-21 / %x23-5B / %x5D-7E.
_UNSAFE_HEADER_TEXT = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def header_safe(text: str) -> str:
    """Replace every character RFC 6750 §3 forbids in an auth-param value with ``?``."""
    return _UNSAFE_HEADER_TEXT.sub("?", text)


@dataclass(frozen=True, slots=True)
class Response:
    """A response the plugin sends itself through ``kong.response.exit``."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_body(error: str, description: str) -> bytes:
    """The JSON error body of behaviour §4: ``{"error": ..., "error_description": ...}``."""
    return json.dumps({"error": error, "error_description": description}, separators=(",", ":")).encode()


JSON = "application/json"


class ConfigError(Exception):
    """The plugin instance's configuration is unusable; ``field`` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class Refusal(Exception):
    """A request the plugin answers itself instead of proxying it.

    Each kind of refusal is a subclass that declares in its class statement its ``status``, its
    ``error`` code and its default ``description``; in its body, where they differ from its
    parent's, whether the response carries a ``WWW-Authenticate`` challenge (``challenges``) and
    the fixed ``headers`` it adds.
    """

    status = 500
    error = "server_error"
    description = "The gateway could not process the request"
    challenges = False  # whether the response carries a ``WWW-Authenticate`` challenge
    scopes: tuple[str, ...] | None = None  # the challenge's ``scope``, when not ``scopes_supported``
    scheme: str | None = None  # the challenge carrying the error: "DPoP", or None for the request's own
    headers: Mapping[str, str] = {}

    def __init_subclass__(cls, *, status: int, error: str, description: str) -> None:
        super().__init_subclass__()
        cls.status, cls.error, cls.description = status, error, description

    def __init__(self, description: str | None = None) -> None:
        super().__init__(description or self.description)
        if description is not None:
            self.description = description

    def challenge_params(self) -> list[tuple[str, str]]:
        """The auth-params this refusal adds to ``WWW-Authenticate`` (none by default)."""
        return []

    def extra_headers(self) -> dict[str, str]:
        return dict(self.headers)

    def body(self) -> bytes:
        """The response body: the JSON error body of behaviour §4 unless a subclass answers otherwise."""
        return json_body(self.error, self.description)


class MissingToken(Refusal, status=401, error="unauthorized", description="Missing access token"):
    """No bearer token at all: RFC 6750 §3.1, no error code in the challenge."""

    challenges = True


class InvalidRequest(Refusal, status=400, error="invalid_request", description="The request is malformed"):
    """Malformed credentials (several Authorization headers, an ill-formed token): RFC 6750 §3.1."""

    challenges = True

    def challenge_params(self) -> list[tuple[str, str]]:
        return [("error", self.error), ("error_description", header_safe(self.description))]


class InvalidToken(InvalidRequest, status=401, error="invalid_token", description="The access token is invalid"):
    """A token is present but not acceptable (RFC 6750 §3.1 ``invalid_token``)."""


class InvalidDpopProof(InvalidRequest, status=401, error="invalid_dpop_proof", description="The DPoP proof is invalid"):
    """RFC 9449 §7.1: a DPoP proof that fails a check of §4.3; the error is on the DPoP challenge."""

    scheme = "DPoP"


class UseDpopNonce(
    InvalidRequest, status=401, error="use_dpop_nonce", description="The DPoP proof must carry a nonce from this server"
):
    """RFC 9449 §9: a proof without a valid server nonce; ``DPoP-Nonce`` carries a fresh one."""

    scheme = "DPoP"

    def __init__(self, nonce: str, description: str | None = None) -> None:
        super().__init__(description)
        self.nonce = nonce

    def extra_headers(self) -> dict[str, str]:
        return {"DPoP-Nonce": self.nonce}


class InsufficientScope(
    InvalidRequest,
    status=403,
    error="insufficient_scope",
    description="The access token does not grant the scopes this operation needs",
):
    """RFC 6750 §3.1 ``insufficient_scope``; MCP 2026-07-28's step-up: the challenge names every scope
    the current operation needs, so the client can ask for them in one authorization."""

    def __init__(self, scopes: tuple[str, ...], description: str | None = None) -> None:
        super().__init__(description)
        self.scopes = scopes


class PayloadTooLarge(
    Refusal, status=413, error="request_too_large", description="The request body is larger than this resource accepts"
):
    """``Content-Length`` above ``max_request_body_size``."""


def jsonrpc_error_body(request_id: Any, code: int, message: str) -> bytes:
    """A JSON-RPC 2.0 error response (JSON-RPC 2.0 §5, §5.1): ``{"jsonrpc", "id", "error": {"code", "message"}}``."""
    error = {"code": code, "message": message}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}, separators=(",", ":")).encode()


class HeaderMismatch(
    Refusal,
    status=400,
    error="invalid_request",
    description="Header mismatch: the MCP routing headers are missing, malformed or do not match the request body",
):
    """MCP 2026-07-28 Streamable HTTP, *Request Metadata* § *Server Validation*: ``400`` with the
    JSON-RPC error ``-32020`` (``HeaderMismatch``) for a required routing header that is missing, a
    header value that does not match the body or that contains invalid characters; also a routing
    header sent twice (first-copy and last-copy readers would disagree).

    ``request_id`` is the id of the single JSON-RPC request in the body, ``None`` (JSON ``null``)
    when there is none or the body was not read.
    """

    CODE = -32020

    def __init__(self, request_id: Any = None, description: str | None = None) -> None:
        super().__init__(description)
        self.request_id = request_id

    def body(self) -> bytes:
        return jsonrpc_error_body(self.request_id, self.CODE, self.description)


class InvalidMessage(
    Refusal,
    status=400,
    error="invalid_request",
    description="Invalid Request: the body is not a JSON-RPC request or notification",
):
    """A body that is not a JSON-RPC request or notification: ``400`` with a JSON-RPC error body
    whose id is ``null`` (JSON-RPC 2.0 §5.1): ``-32700`` (Parse error) when it is not UTF-8 JSON,
    ``-32600`` (Invalid Request) when it is JSON of the wrong shape."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600

    def __init__(self, description: str | None = None, *, code: int = INVALID_REQUEST) -> None:
        super().__init__(description)
        self.code = code

    def body(self) -> bytes:
        return jsonrpc_error_body(None, self.code, self.description)


class LengthRequired(
    Refusal,
    status=411,
    error="length_required",
    description="A Content-Length is required for request bodies on this resource",
):
    """A body of unknown length while ``max_request_body_size`` limits bodies."""


class Forbidden(
    Refusal,
    status=403,
    error="access_denied",
    description="The access token does not map to a consumer of this gateway",
):
    """The token is valid but maps to no Kong consumer (behaviour §10, unless ``consumer_optional``)."""


class Unavailable(
    Refusal, status=503, error="temporarily_unavailable", description="The authorization server could not be reached"
):
    """The authorization server (or JWKS, discovery, exchange endpoint) failed: never a 401."""

    headers = {"Retry-After": "5"}


class MethodNotAllowed(
    Refusal, status=405, error="method_not_allowed", description="The protected resource metadata supports GET and HEAD"
):
    """A method other than GET, HEAD or OPTIONS on a protected-resource metadata path."""

    headers = {"Allow": "GET, HEAD, OPTIONS"}


class Misconfigured(
    Refusal, status=500, error="server_error", description="The gateway's authorization plugin is misconfigured"
):
    """The instance's configuration is invalid: fail closed on every request."""


class InternalError(Refusal, status=500, error="server_error", description="The gateway could not process the request"):
    """An unexpected error inside the plugin: fail closed."""
