"""RFC 6750: taking the bearer token from a request, and the ``WWW-Authenticate`` challenge.

- §2.1: the token travels as ``Authorization: Bearer <b64token>``; ``b64token`` is
  ``1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`` and the scheme is
  case-insensitive (RFC 9110 §11.1). §2.2 (form body) and §2.3 (query) are never accepted
  here: MCP authorization forbids tokens in the query string and the metadata advertises
  ``bearer_methods_supported: ["header"]``.
- §3: the challenge. Without any credentials the resource SHOULD NOT send an error code
  (§3.1); malformed credentials are ``invalid_request`` (400).
- RFC 9728 §5.1: ``resource_metadata`` carries the absolute URL of the protected resource
  metadata.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .errors import InvalidRequest, InvalidToken, MissingToken, header_safe

MAX_TOKEN_BYTES = 16 * 1024  # behaviour §4.1: larger tokens are refused before any parsing
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


def extract_token(headers: Mapping[str, Sequence[str]]) -> str:
    """Return the bearer token of a request, or raise the refusal that fits (behaviour §4).

    ``headers`` is Kong's multimap: lowercase names to lists of values.
    """
    return extract_credential(headers, dpop=False)[1]


def extract_credential(headers: Mapping[str, Sequence[str]], dpop: bool) -> tuple[str, str]:
    """``(scheme, token)``: ``"bearer"``, or with ``dpop`` also ``"dpop"`` (RFC 9449 §7.1: the same
    token syntax), or the refusal that fits (behaviour §4, §14)."""
    values = headers.get("authorization") or []
    if isinstance(values, str):  # defensive: Kong always sends lists for get_headers()
        values = [values]
    if not values:
        raise MissingToken()
    if len(values) > 1:
        raise InvalidRequest("Only one Authorization header is allowed")
    value = values[0].strip(" \t")
    scheme, _, rest = value.partition(" ")
    scheme = scheme.lower()
    if scheme != "bearer" and not (dpop and scheme == "dpop"):
        # Another scheme (Basic, DPoP when it is off, ...) carries no token here: challenge as if absent.
        raise MissingToken()
    name = "Bearer" if scheme == "bearer" else "DPoP"
    token = rest.strip(" ")
    if not token:
        raise InvalidRequest(f"The {name} token is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("The access token is too large")
    if not well_formed(token):
        raise InvalidRequest(f"The {name} token is not well-formed")
    return scheme, token


def well_formed(token: str) -> bool:
    """Whether ``token`` is an RFC 6750 §2.1 ``b64token``, the character rule for every token taken
    from a request header (the bearer token, and the RFC 8693 actor token).

    Only ASCII matches, so a header byte that is not UTF-8 (which the plugin server carries as a
    lone surrogate) never passes: such a string cannot even be form-encoded for the authorization
    server.
    """
    return _B64TOKEN.fullmatch(token) is not None


def quote(value: str) -> str:
    """An RFC 9110 quoted-string of a value already limited to RFC 6750's character set."""
    return '"' + header_safe(value) + '"'


def challenge(
    params: Sequence[tuple[str, str]],
    resource_metadata: str,
    scopes: Sequence[str],
    scheme: str = "Bearer",
    algs: Sequence[str] = (),
) -> str:
    """A ``Bearer`` (or ``DPoP``, RFC 9449 §7.1, with ``algs``) challenge: the refusal's params,
    then ``algs``, ``resource_metadata`` and ``scope``.

    ``scope`` is sent only when scopes are configured: an empty ``scope=""`` misleads clients.
    """
    parts = [f"{name}={quote(value)}" for name, value in params]
    if algs:
        parts.append(f"algs={quote(' '.join(algs))}")
    parts.append(f"resource_metadata={quote(resource_metadata)}")
    if scopes:
        parts.append(f"scope={quote(' '.join(scopes))}")
    return f"{scheme} " + ", ".join(parts)
