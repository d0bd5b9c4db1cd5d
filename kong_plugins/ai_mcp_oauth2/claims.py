"""Claim paths and the header values made from them (behaviour §8).

- ``claim_to_header`` reads top-level claims; ``upstream_headers`` walks ``path`` through nested
  objects. Both are :class:`~.config.HeaderMapping` values with a path.
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
