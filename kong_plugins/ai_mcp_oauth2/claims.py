"""Claims: the rules on them that JWT validation and introspection share, and the header values
made from them.

**Rules** (:class:`ClaimRules`, behaviour §5/§6), one place for both kinds of token:

- RFC 7519 §2: times are NumericDates (:func:`numeric_member`); each caller says whose fault a
  value that is no usable number is (the token's for a JWT, the server's for an introspection
  answer).
- RFC 7519 §4.1.4/§4.1.5/§4.1.6: a token past its ``exp``, before its ``nbf`` or issued (``iat``)
  in the future is refused, each with ``jwt_claims_leeway``.
- RFC 9068 §4 / RFC 8725 §3.8: ``iss`` must be one of ``authorization_servers``.
- RFC 8707 §2, MCP authorization: ``aud`` (string or list) must contain ``resource`` unless
  ``insecure_relaxed_audience_validation``.
- Issuers and audiences compare as exact strings but for one trailing ``/`` (:func:`same_identifier`).

Which claims are required is the caller's: a JWT must carry ``exp`` and ``iss``, an
introspection answer need not.

**Header values** (behaviour §8):

- ``claim_to_header`` reads top-level claims; ``upstream_headers`` walks ``path`` through nested
  objects; :func:`~.gateway.header_claims` gives both as (header, claim path) pairs.
- Encoding: a string is sent as is; a number or boolean as JSON text; a list of scalars as its
  items joined by ``,`` unless an item contains a comma, in which case the whole list is sent
  as compact JSON; an object as compact JSON. A value with CR, LF, NUL or another control
  character but HTAB is not sent at all (RFC 9110 §5.5: never valid in a field value).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import InvalidToken
from .schema import Config

_MISSING = object()
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def resolve(claims: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at ``path`` in ``claims``, or None when any step is absent or not an object."""
    value: Any = claims
    for step in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(step, _MISSING)
        if value is _MISSING:
            return None
    return value


def number(value: Any) -> float | None:
    """A JSON number as a finite float (RFC 7519 §2 NumericDate), or None for anything else.

    Not numbers here: booleans, and integers no float can hold. JSON numbers have no size limit
    (RFC 8259 §6), so a token or an authorization server's answer can carry a 400-digit ``exp``;
    converting it raises ``OverflowError``, and no usable time or lifetime is that large. Every
    time and lifetime the plugin reads from untrusted JSON goes through this function.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def numeric_member(values: Mapping[str, Any], name: str, unusable: Callable[[str], Exception]) -> float | None:
    """The NumericDate member ``name`` (RFC 7519 §2): None when absent or null; ``unusable(name)``
    is raised when it is present but no usable number (the caller says whose fault that is)."""
    if values.get(name) is None:
        return None
    value = number(values[name])
    if value is None:
        raise unusable(name)
    return value


def same_identifier(a: str, b: str) -> bool:
    """Issuers and audiences compare as exact strings, except that one trailing ``/`` is ignored."""
    return a == b or (a.endswith("/") and a[:-1] == b) or (b.endswith("/") and b[:-1] == a)


class ClaimRules:
    """The claim rules of one plugin instance (module docstring); each refusal is an InvalidToken.

    ``unusable(name)`` is raised for a time that is present but no usable number: the caller says
    whose fault that is.
    """

    def __init__(self, config: Config, unusable: Callable[[str], Exception]) -> None:
        self.unusable = unusable
        self.leeway = config.jwt_claims_leeway
        self.authorization_servers = config.authorization_servers
        self.resource = config.resource
        self.relaxed_audience = config.insecure_relaxed_audience_validation

    def expires_at(self, claims: Mapping[str, Any], now: float) -> float | None:
        """``exp`` plus the leeway, the time until which the token may be trusted; None without ``exp``."""
        exp = numeric_member(claims, "exp", self.unusable)
        if exp is None:
            return None
        if now >= exp + self.leeway:
            raise InvalidToken("The access token has expired")
        return exp + self.leeway

    def check_not_before(self, claims: Mapping[str, Any], now: float) -> None:
        self._not_after_now(claims, "nbf", now, "The access token is not valid yet")

    def check_issued_at(self, claims: Mapping[str, Any], now: float) -> None:
        self._not_after_now(claims, "iat", now, "The access token was issued in the future")

    def _not_after_now(self, claims: Mapping[str, Any], name: str, now: float, refusal: str) -> None:
        value = numeric_member(claims, name, self.unusable)
        if value is not None and now + self.leeway < value:
            raise InvalidToken(refusal)

    def trusted_issuer(self, issuer: Any) -> str:
        """The configured authorization server that ``issuer`` names."""
        if isinstance(issuer, str):
            for server in self.authorization_servers:
                if same_identifier(issuer, server):
                    return server
        raise InvalidToken("The access token was not issued by a trusted authorization server")

    def check_audience(self, claims: Mapping[str, Any]) -> None:
        """The token must name this resource in ``aud`` (unless relaxed)."""
        if self.relaxed_audience:
            return
        audience = claims.get("aud")
        values = [audience] if isinstance(audience, str) else audience
        if not isinstance(values, list) or not any(
            isinstance(v, str) and same_identifier(v, self.resource) for v in values
        ):
            raise InvalidToken("The access token is not intended for this resource")


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return json.dumps(value)
    return None


def header_value(value: Any) -> str | None:
    """The header value for a claim value, or None when nothing may be sent."""
    if value is None:
        return None
    text = _scalar(value)
    if text is None:
        if isinstance(value, list) and all(_scalar(v) is not None for v in value):
            items = [_scalar(v) or "" for v in value]
            if any("," in item for item in items):
                text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            else:
                text = ",".join(items)
        else:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if _CONTROL.search(text) or not sendable(text):
        return None
    return text


def sendable(text: str) -> bool:
    """Whether a string can cross the plugin-server socket (a lone surrogate from a JSON escape
    such as ``"\\ud800"`` cannot be encoded, and a failed Step makes Kong proxy the request)."""
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True
