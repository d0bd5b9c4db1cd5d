"""Which MCP operation a request is: from its JSON-RPC body, its routing headers, or both.

Pure: no PDK, no I/O. The references are the MCP 2026-07-28 specification, ``basic/transports/
streamable-http``, section *Request Metadata* (cited below as "Request Metadata §…"):

- *Standard Request Headers*: every POST carries ``Mcp-Method`` (the body's ``method``) and, for
  ``tools/call``, ``resources/read`` and ``prompts/get``, ``Mcp-Name`` (``params.name`` or
  ``params.uri``); *Protocol Version Header*: and ``MCP-Protocol-Version``.
- *Value Encoding*: a name that is not plain printable ASCII without edge whitespace travels as
  ``=?base64?<base64 of its UTF-8>?=``; the markers are case-sensitive; a literal value that looks
  like the sentinel is itself encoded.
- *Case Sensitivity*: header names are case-insensitive, header values are case-sensitive.
- *Server Validation*: a server that reads the body rejects a missing required header, a value
  that does not match the body or that has invalid characters with ``400`` and JSON-RPC error
  ``-32020`` (:class:`~.errors.HeaderMismatch`). Its last note: an intermediary enforcing policy on
  the mirrored headers SHOULD check that ``MCP-Protocol-Version`` is a version that requires the
  header/body validation (:func:`trusted_operation`).

Nothing here lets a request be classified as something other than what the body says, unless the
operator vouches for the upstream's own header/body check (``mcp_trust_routing_headers``):

- the body is parsed strictly (UTF-8 only, no BOM, no duplicate object keys, no ``NaN``/
  ``Infinity``, bounded nesting) so that no two JSON readers can disagree on its ``method`` or
  name; a method or name holding a NUL or a lone surrogate (which another reader could drop or
  replace) is refused;
- a routing header sent twice, a header value with characters the transport does not allow, a
  malformed or non-canonical base64 sentinel, or a sentinel spelled in another case is a
  mismatch, never a value read one way here and another way upstream;
- names are compared exactly (code point for code point, case-sensitive), never normalised.

Decisions the specification leaves open, taken here:

- A batch (a JSON array, protocol versions before 2025-06-18) needs every member's operation. It
  cannot be mirrored in one set of headers, so a batch carrying ``Mcp-Method`` or ``Mcp-Name``, or
  sent under a version that requires them, is a mismatch.
- Notifications are held to the same header rules as requests: 2026-07-28 defines no
  client-to-server notification over HTTP, so requiring ``Mcp-Method`` costs no conforming client
  anything, and one rule is easier to get right than two.
- ``Mcp-Name`` on a method that has no name is a mismatch (the header names something the body
  cannot carry); a name-bearing method whose body has no string name is the operation without a
  name (the upstream rejects such a call), but under a routing version its ``Mcp-Name`` is still
  required.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .errors import HeaderMismatch, InvalidMessage, PayloadTooLarge

ROUTING_VERSION = "2026-07-28"
"""The first protocol version whose Streamable HTTP transport requires the routing headers."""

NAME_PARAMS: Mapping[str, str] = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
"""Request Metadata § Standard Request Headers: methods mirrored in ``Mcp-Name``, and the params member."""

_VERSION = "mcp-protocol-version"
_METHOD = "mcp-method"
_NAME = "mcp-name"

# Request Metadata § Value Encoding: exactly these lower-case markers; ``.`` does not match a line break,
# and the payload alphabet is checked by the strict decoder.
_SENTINEL = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)
# A method: visible ASCII without a comma (which a header-folding proxy could split on).
_METHOD_VALUE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
# A plain name: printable ASCII (RFC 9110 field value without obs-text or HTAB, which a client must
# encode), no leading or trailing space (an HTTP parser strips it, so the client must encode it).
_PLAIN_NAME = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?")
# Protocol versions are ISO dates; ``[0-9]``, not ``\\d``, which also matches other scripts' digits.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Characters another JSON or header reader could drop, replace or stop at.
_AMBIGUOUS = re.compile(r"[\x00\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Operation:
    """One JSON-RPC request or notification: its ``method`` and, for :data:`NAME_PARAMS` methods,
    the tool or prompt name or resource URI (``None`` when the body carries no string name)."""

    method: str
    name: str | None = None


RESPONSE = Operation("")
"""A JSON-RPC response in the body: no operation (no ``mcp_operations`` entry has an empty method), so
only the route's scopes apply; routing headers on it are a mismatch."""


@dataclass(frozen=True, slots=True)
class Message:
    """A POST body: one operation per request or notification (several for a batch), and the id of
    a single request (``None`` for a notification or a batch, and for an id that is not a JSON-RPC
    string or integer), echoed in a ``-32020`` error body."""

    operations: tuple[Operation, ...]
    request_id: Any = None


def routing_version(version: str) -> bool:
    """Whether ``version`` is :data:`ROUTING_VERSION` or later (ISO dates compare as strings)."""
    return _DATE.fullmatch(version) is not None and version >= ROUTING_VERSION


def header_operation(headers: Mapping[str, Sequence[str]]) -> Operation | None:
    """The operation ``Mcp-Method`` / ``Mcp-Name`` name, ``None`` without ``Mcp-Method``.

    ``headers`` as Kong's ``get_headers`` gives them: lower-case names, a list of values each.
    ``Mcp-Name`` is decoded from the Value Encoding sentinel. Both headers are validated even when
    the operation is not needed: a duplicate, a value with invalid characters, an undecodable
    sentinel or ``Mcp-Name`` on a method that has no name raise :class:`HeaderMismatch`.
    """
    method = _method_header(headers)
    name = _name_header(headers)
    if method is None:
        return None
    if name is not None and method not in NAME_PARAMS:
        _mismatch(None, f"{method} has no name, but Mcp-Name is present")
    return Operation(method, name)


def trusted_operation(headers: Mapping[str, Sequence[str]]) -> Operation | None:
    """For ``mcp_trust_routing_headers``: the operation from the headers alone, or ``None`` (read the body).

    Only a request whose single ``MCP-Protocol-Version`` is :data:`ROUTING_VERSION` or later (the
    Server Validation note: only such a version makes the upstream check the headers against the
    body) and that has ``Mcp-Method``, and ``Mcp-Name`` where the method has a name, is classified
    here. Never parses the body. Raises like :func:`header_operation`.
    """
    operation = header_operation(headers)
    version = _single(headers, _VERSION)
    if operation is None or version is None or not routing_version(version):
        return None
    if operation.method in NAME_PARAMS and operation.name is None:
        return None
    return operation


def check_agreement(headers: Mapping[str, Sequence[str]], message: Message) -> None:
    """Request Metadata § Server Validation, for a body this plugin read: raise :class:`HeaderMismatch`
    (with the request's id) unless the routing headers agree with ``message``.

    Present headers must equal the body's method and name exactly (after decoding ``Mcp-Name``);
    ``Mcp-Name`` on a method without a name is a mismatch. Under :data:`ROUTING_VERSION` or later,
    ``Mcp-Method`` is required, and ``Mcp-Name`` for :data:`NAME_PARAMS` methods. A batch cannot be
    mirrored: routing headers on it, or a routing version, are a mismatch.
    """
    request_id = message.request_id
    try:
        method = _method_header(headers)
        name = _name_header(headers)
        version = _single(headers, _VERSION)
    except HeaderMismatch as mismatch:
        raise HeaderMismatch(request_id, mismatch.description) from None
    requires = version is not None and routing_version(version)
    if len(message.operations) != 1:
        if method is not None or name is not None or requires:
            _mismatch(request_id, "A batch cannot carry MCP routing headers")
        return
    operation = message.operations[0]
    if method is None:
        if requires:
            _mismatch(request_id, "The Mcp-Method header is required")
    elif method != operation.method:
        _mismatch(request_id, "The Mcp-Method header does not match the body's method")
    if operation.method not in NAME_PARAMS:
        if name is not None:
            _mismatch(request_id, f"{operation.method} has no name, but Mcp-Name is present")
    elif name is None:
        if requires:
            _mismatch(request_id, "The Mcp-Name header is required")
    elif name != operation.name:
        _mismatch(request_id, f"The Mcp-Name header does not match the body's params.{NAME_PARAMS[operation.method]}")


def read_message(raw: bytes, *, limit: int | None = None) -> Message:
    """The JSON-RPC request or notification (or non-empty batch of them) in a POST body.

    Basic § Messages and JSON-RPC 2.0 §4: a request or notification is an object with a string
    ``method``; a name-bearing method's name is ``params.name`` / ``params.uri`` when that is a
    string. Raises :class:`InvalidMessage` (``-32700``) for a body that is not strict UTF-8 JSON
    (BOM, UTF-16, invalid bytes, duplicate keys, ``NaN``/``Infinity``, nesting too deep, an integer
    past Python's digit limit) and (``-32600``) for JSON of another shape: a scalar, ``[]``, an
    object without a string ``method``, a batch member that is not such an object, a method or name
    holding a NUL or a lone surrogate. With ``limit``, a longer body raises :class:`PayloadTooLarge`
    before it is parsed.
    """
    if limit is not None and len(raw) > limit:
        raise PayloadTooLarge()
    document = _parse(raw)
    if isinstance(document, list):
        members: list[Any] = document
        if not members:
            raise InvalidMessage("An empty batch is not a JSON-RPC request")
        return Message(tuple(_operation(member) for member in members))
    operation = _operation(document)
    request_id = document.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    return Message((operation,), request_id)


class _Reject(Exception):
    """Raised inside the JSON parser's hooks."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Reject("duplicate object key")
    return obj


def _constant(name: str) -> NoReturn:
    raise _Reject(f"{name} is not JSON")


def _parse(raw: bytes) -> Any:
    """Strict RFC 8259 JSON in UTF-8 (MCP: JSON-RPC messages MUST be UTF-8 encoded)."""
    try:
        text = raw.decode("utf-8")  # strict: no BOM sniffing, no UTF-16/32 as json.loads(bytes) would do
        # A leading U+FEFF is refused by json.loads; the C scanner's nesting raises RecursionError.
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except (ValueError, _Reject, RecursionError) as error:  # UnicodeDecodeError, JSONDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(error, RecursionError) else "not strict UTF-8 JSON"
        raise InvalidMessage(f"Parse error: the body is {reason}", code=InvalidMessage.PARSE_ERROR) from None


def _operation(member: Any) -> Operation:
    if _is_response(member):
        return RESPONSE
    if not isinstance(member, dict) or not isinstance(method := member.get("method"), str):
        raise InvalidMessage("Invalid Request: a JSON-RPC request or notification needs a string method")
    name = None
    params = member.get("params")
    if method in NAME_PARAMS and isinstance(params, dict) and isinstance(value := params.get(NAME_PARAMS[method]), str):
        name = value
    if _AMBIGUOUS.search(method) or (name is not None and _AMBIGUOUS.search(name)):
        raise InvalidMessage("Invalid Request: the method or name holds a NUL or an unpaired surrogate")
    return Operation(method, name)


def _is_response(member: Any) -> bool:
    """JSON-RPC 2.0 §5: a response the client posts to answer a server's request (sampling,
    elicitation, roots in protocol versions before 2026-07-28): an ``id`` and exactly one of
    ``result`` and ``error``, ``"jsonrpc": "2.0"``, no ``method``. It performs no operation."""
    return (
        isinstance(member, dict)
        and member.get("jsonrpc") == "2.0"
        and "method" not in member
        and "id" in member
        and (("result" in member) != ("error" in member))
    )


def _single(headers: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = headers.get(key) or ()
    if isinstance(values, str):  # defensive: Kong's get_headers() gives lists
        values = (values,)
    if len(values) > 1:
        _mismatch(None, f"The {key} header is repeated")
    if values and not isinstance(values[0], str):
        _mismatch(None, f"The {key} header is malformed")
    return values[0] if values else None


def _method_header(headers: Mapping[str, Sequence[str]]) -> str | None:
    value = _single(headers, _METHOD)
    if value is not None and (_METHOD_VALUE.fullmatch(value) is None or value.startswith("=?")):
        _mismatch(None, "The Mcp-Method header holds invalid characters")
    return value


def _name_header(headers: Mapping[str, Sequence[str]]) -> str | None:
    value = _single(headers, _NAME)
    if value is None:
        return None
    sentinel = _SENTINEL.fullmatch(value)
    if sentinel is None:
        if _PLAIN_NAME.fullmatch(value) is None:
            _mismatch(None, "The Mcp-Name header holds characters that must be base64-encoded")
        if value[:9].lower() == "=?base64?" and value.endswith("?="):
            _mismatch(None, "The base64 markers of the Mcp-Name header are case-sensitive")
        return value
    decoded = _decode(sentinel.group(1))
    if decoded is None or "\x00" in decoded:
        _mismatch(None, "The Mcp-Name header's base64 value is malformed")
    return decoded


def _decode(payload: str) -> str | None:
    """Strict, canonical base64 (RFC 4648 §4, padded, no other characters) of strict UTF-8."""
    try:
        data = base64.b64decode(payload.encode("ascii"), validate=True)
        if base64.b64encode(data).decode("ascii") != payload:  # non-zero pad bits, missing padding
            return None
        return data.decode("utf-8")
    except (UnicodeError, binascii.Error):
        return None


def _mismatch(request_id: Any, description: str) -> NoReturn:
    raise HeaderMismatch(request_id, f"Header mismatch: {description}")
