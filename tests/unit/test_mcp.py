"""Which MCP operation a request is (mcp.py): the JSON-RPC body, the MCP 2026-07-28 routing headers
(Streamable HTTP, Request Metadata), their agreement, and every way a client could try to make the
two disagree: lying headers, duplicates, encodings, JSON tricks, batches."""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2 import errors, gateway, mcp
from kong_plugins.ai_mcp_oauth2.mcp import Message, Operation

V = mcp.ROUTING_VERSION
Headers = dict[str, list[str]]


def body(method: str = "tools/call", name: Any = "read_file", *, key: str | None = None, **extra: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method, **extra}
    if name is not None:
        message["params"] = {key or mcp.NAME_PARAMS.get(method, "name"): name, "arguments": {}}
    return json.dumps(message).encode()


def sentinel(value: str) -> str:
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


def routing(method: str | None = "tools/call", name: str | None = "read_file", version: str | None = V) -> Headers:
    headers: Headers = {}
    if version is not None:
        headers["mcp-protocol-version"] = [version]
    if method is not None:
        headers["mcp-method"] = [method]
    if name is not None:
        headers["mcp-name"] = [name]
    return headers


def mismatch(headers: Mapping[str, Sequence[str]], raw: bytes) -> errors.HeaderMismatch:
    with pytest.raises(errors.HeaderMismatch) as caught:
        mcp.check_agreement(headers, mcp.read_message(raw))
    return caught.value


def refused(raw: bytes) -> tuple[int, int, Any]:
    """The JSON-RPC error code (checked against the body's), status and id of the refusal of ``raw``."""
    with pytest.raises(errors.InvalidMessage) as caught:
        mcp.read_message(raw)
    sent = json.loads(caught.value.body())
    assert sent["error"]["code"] == caught.value.code
    return caught.value.code, caught.value.status, sent["id"]


# --- read_message: the body ---------------------------------------------------------------------


@pytest.mark.parametrize("raw,operation", [
    (body("tools/call", "read_file"), Operation("tools/call", "read_file")),
    (body("prompts/get", "summarise"), Operation("prompts/get", "summarise")),
    (body("resources/read", "file:///a,b c"), Operation("resources/read", "file:///a,b c")),
    (body("tools/list", None), Operation("tools/list")),
    (body("tools/list", "ignored", key="name"), Operation("tools/list")),  # only NAME_PARAMS methods have names
    (body("resources/read", "x", key="name"), Operation("resources/read")),  # the URI is params.uri
    (body("tools/call", None), Operation("tools/call")),  # no params: the upstream refuses, no name
    (body("tools/call", 42), Operation("tools/call")),  # a non-string name is no name
    (body("tools/call", ["delete_repo"]), Operation("tools/call")),
    (b'{"method":"tools/call","params":["delete_repo"]}', Operation("tools/call")),  # positional params
    (b'{"method":"tools/call","params":{"name":"\\u0064elete_repo"}}', Operation("tools/call", "delete_repo")),
    (b'{"method":"tools/call","params":{"name":"Delete_Repo"}}', Operation("tools/call", "Delete_Repo")),  # exact
    (b'{"method":"tools/call","params":{"name":" delete_repo "}}', Operation("tools/call", " delete_repo ")),
    ('{"method":"tools/call","params":{"name":"ｄelete"}}'.encode(), Operation("tools/call", "ｄelete")),  # no NFKC
    (b' \n{"method":"notifications/initialized"}\r\n', Operation("notifications/initialized")),
])  # fmt: skip
def test_the_body_names_one_operation(raw: bytes, operation: Operation) -> None:
    assert mcp.read_message(raw).operations == (operation,)


@pytest.mark.parametrize("raw,request_id", [
    (b'{"id":1,"method":"m"}', 1),
    (b'{"id":"abc","method":"m"}', "abc"),
    (b'{"method":"m"}', None),  # a notification
    (b'{"id":null,"method":"m"}', None),
    (b'{"id":true,"method":"m"}', None),  # not a JSON-RPC id: echoed as null
    (b'{"id":1.5,"method":"m"}', None),
    (b'{"id":1e999,"method":"m"}', None),  # infinite: never echoed as an invalid JSON number
    (b'{"id":{"a":1},"method":"m"}', None),
])  # fmt: skip
def test_the_request_id_is_kept_only_when_it_is_a_json_rpc_string_or_integer(raw: bytes, request_id: Any) -> None:
    message = mcp.read_message(raw)
    assert message.request_id == request_id
    json.loads(errors.HeaderMismatch(message.request_id).body())  # always valid JSON


def test_a_batch_has_every_members_operation_and_no_id() -> None:
    raw = (
        b'[{"id":1,"method":"tools/call","params":{"name":"a"}},{"method":"tools/list"},{"id":2,"method":"tools/call"}]'
    )
    assert mcp.read_message(raw) == Message(
        (Operation("tools/call", "a"), Operation("tools/list"), Operation("tools/call")), None
    )


@pytest.mark.parametrize("raw", [
    b"",
    b"{",
    b'{"method":"tools/call"} {}',  # trailing data
    b"\xff\xfe{}",
    b'{"method":"tools/call","params":{"name":"\xff"}}',  # invalid UTF-8
    b'{"method":"tools/call","params":{"name":"\xed\xa0\x80"}}',  # an encoded surrogate is not UTF-8
    b'\xef\xbb\xbf{"method":"tools/list"}',  # UTF-8 BOM
    '{"method":"tools/list"}'.encode("utf-16"),
    '{"method":"tools/list"}'.encode("utf-16-le"),  # valid UTF-8 with NULs between the characters
    '{"method":"tools/list"}'.encode("utf-32"),
    b'{"method":"tools/call","method":"tools/list"}',  # duplicate keys: first-wins and last-wins readers disagree
    b'{"method":"tools/call","params":{"name":"a","name":"b"}}',
    b'{"method":"tools/call","params":{"name":"a","n\\u0061me":"b"}}',  # the same key, escaped
    b'{"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}',
    b'{"method":"tools/call","params":{"arguments":{"x":1,"x":2}}}',  # anywhere in the document
    b'{"method":"tools/list","id":NaN}',
    b'{"method":"tools/list","id":Infinity}',
    b'{"method":"tools/list","id":-Infinity}',
    b'{"method":"tools/list","id":' + b"9" * 5000 + b"}",  # past Python's int digit limit
    b"[" * 100_000 + b"]" * 100_000,  # nesting: bounded, never a crash
    b'{"method":"m","params":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001,
    b"{'method':'tools/list'}",
    b'{"method":"tools/list",}',
])  # fmt: skip
def test_a_body_that_is_not_strict_utf8_json_is_a_parse_error(raw: bytes) -> None:
    assert refused(raw) == (-32700, 400, None)


@pytest.mark.parametrize("raw", [
    b"null", b"1", b'"tools/call"', b"true", b"[]", b"{}",
    b'{"id":1}',
    b'{"id":1,"result":{}}',  # a response
    b'{"method":null}', b'{"method":1}', b'{"method":["tools/call"]}', b'{"Method":"tools/call"}',
    b"[1]", b'[{"method":"tools/list"},{}]', b'[{"method":"tools/list"},[{"method":"tools/call"}]]',
    b'[{"method":"tools/list"},"tools/call"]',
    b'{"method":"tools/call\\u0000x"}',
    b'{"method":"tools/call","params":{"name":"delete_repo\\u0000"}}',  # a C reader stops at the NUL
    b'{"method":"tools/call","params":{"name":"delete_repo\\ud800"}}',  # a lenient reader drops it
    b'{"method":"resources/read","params":{"uri":"\\udc00file:///x"}}',
])  # fmt: skip
def test_json_of_another_shape_is_an_invalid_request(raw: bytes) -> None:
    assert refused(raw) == (-32600, 400, None)


def test_a_lone_surrogate_outside_the_method_and_name_is_the_bodys_business() -> None:
    assert mcp.read_message(b'{"method":"tools/call","params":{"name":"a","arguments":{"x":"\\ud800"}}}')


def test_a_body_over_the_limit_is_refused_before_it_is_parsed() -> None:
    raw = body()
    assert mcp.read_message(raw, limit=len(raw)).operations == (Operation("tools/call", "read_file"),)
    with pytest.raises(errors.PayloadTooLarge):
        mcp.read_message(raw + b" ", limit=len(raw))
    with pytest.raises(errors.PayloadTooLarge):
        mcp.read_message(b"[" * 10_000_000, limit=1024)


# --- header_operation and the base64 sentinel ----------------------------------------------------


@pytest.mark.parametrize("headers,operation", [
    ({}, None),
    ({"mcp-name": ["read_file"]}, None),  # no Mcp-Method
    ({"mcp-method": []}, None),
    ({"mcp-method": ["tools/list"]}, Operation("tools/list")),
    ({"mcp-method": ["tools/call"]}, Operation("tools/call")),
    (routing(), Operation("tools/call", "read_file")),
    (routing("resources/read", "file:///a,b c?x=1"), Operation("resources/read", "file:///a,b c?x=1")),
    (routing(name=sentinel("Hello, 世界")), Operation("tools/call", "Hello, 世界")),
    (routing(name="=?base64?SGVsbG8sIOS4lueVjA==?="), Operation("tools/call", "Hello, 世界")),  # the spec's example
    (routing(name="=?base64?IHBhZGRlZCA=?="), Operation("tools/call", " padded ")),
    (routing(name="=?base64?bGluZTEKbGluZTI=?="), Operation("tools/call", "line1\nline2")),
    (routing(name="=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="), Operation("tools/call", "=?base64?literal?=")),  # once
    (routing(name=sentinel("read_file")), Operation("tools/call", "read_file")),  # encoding is allowed
    (routing(name="=?base64??="), Operation("tools/call", "")),
    (routing(name=""), Operation("tools/call", "")),
    ({"mcp-method": "tools/list"}, Operation("tools/list")),  # defensive: a bare string is one value
])  # fmt: skip
def test_the_headers_name_an_operation(headers: Any, operation: Operation | None) -> None:
    assert mcp.header_operation(headers) == operation


@pytest.mark.parametrize("headers", [
    {"mcp-method": ["tools/call", "tools/list"]},  # duplicated: first-copy and last-copy readers disagree
    {"mcp-method": ["tools/call", "tools/call"]},
    {"mcp-method": ["tools/call"], "mcp-name": ["read_file", "delete_repo"]},
    {"mcp-name": ["a", "b"]},  # even without Mcp-Method
    {"mcp-method": [""]},
    {"mcp-method": ["tools/call, tools/list"]},  # a folding proxy could split it
    {"mcp-method": ["tools/call,tools/list"]},
    {"mcp-method": ["tools/ call"]},
    {"mcp-method": ["tools/call\t"]},
    {"mcp-method": ["tools/cäll"]},
    {"mcp-method": ["tools/call\x00"]},
    {"mcp-method": ["=?base64?dG9vbHMvY2FsbA==?="]},  # no sentinel for methods: refused, never read either way
    {"mcp-method": [None]},
    routing(name=" read_file"),  # edge whitespace must be encoded
    routing(name="read_file "),
    routing(name="read\tfile"),
    routing(name="read\x00file"),
    routing(name="read\nfile"),
    routing(name="réad_file"),  # non-ASCII must be encoded
    routing(name="=?base64?cmVhZF9maWxl"),  # plain, but then not header-safe? it is: see below
    routing(name="=?BASE64?cmVhZF9maWxl?="),  # the markers are case-sensitive: a case variant is refused
    routing(name="=?Base64?cmVhZF9maWxl?="),
    routing(name="=?base64?cmVhZF9maWxl=?="),  # not canonical: padding where none belongs
    routing(name="=?base64?YWI?="),  # missing padding
    routing(name="=?base64?YWJ=?="),  # non-zero pad bits: "ab" is YWI=
    routing(name="=?base64?cmVh ZF9maWxl?="),  # whitespace inside
    routing(name="=?base64?cmVhZF9maWxl\n?="),
    routing(name="=?base64?cmVh_ZF9maWxl?="),  # URL-safe alphabet
    routing(name="=?base64?/w==?="),  # not UTF-8
    routing(name="=?base64?7aCA?="),  # an encoded surrogate is not UTF-8
    routing(name="=?base64?ZGVsZXRlX3JlcG8A?="),  # delete_repo + NUL
    routing(name="=?base64?ZOWx?="),  # "d" + a truncated sequence
    routing(name="=?base64?ｃmVhZF9maWxl?="),  # non-ASCII in the payload
    routing("tools/list", "read_file"),  # a name for a method that has none
    routing("notifications/initialized", "x"),
])  # fmt: skip
def test_duplicates_invalid_characters_and_bad_sentinels_are_a_mismatch(headers: Any) -> None:
    if headers.get("mcp-name") == ["=?base64?cmVhZF9maWxl"]:  # no closing marker: a legal plain name
        assert mcp.header_operation(headers) == Operation("tools/call", "=?base64?cmVhZF9maWxl")
        return
    with pytest.raises(errors.HeaderMismatch) as caught:
        mcp.header_operation(headers)
    assert caught.value.status == 400 and json.loads(caught.value.body())["error"]["code"] == -32020
    with pytest.raises(errors.HeaderMismatch):
        mcp.trusted_operation(headers)


# --- trusted_operation: headers alone, only for a version whose upstream checks them ------------


@pytest.mark.parametrize("headers,operation", [
    (routing(), Operation("tools/call", "read_file")),
    (routing(version="2026-12-01"), Operation("tools/call", "read_file")),  # later versions too
    (routing(version="2027-01-01"), Operation("tools/call", "read_file")),
    (routing("tools/list", None), Operation("tools/list")),
    (routing("resources/read", sentinel("file:///ü")), Operation("resources/read", "file:///ü")),
    (routing(version="2025-11-25"), None),  # the upstream does not check the headers: read the body
    (routing(version="2025-06-18"), None),
    (routing(version="2026-07-27"), None),
    (routing(version=None), None),
    (routing(version=""), None),
    (routing(version="2026-7-28"), None),  # not an ISO date
    (routing(version="2026-07-28 "), None),
    (routing(version="2026-07-28T00:00:00Z"), None),
    (routing(version="２０２６-０７-２８"), None),  # other scripts' digits
    (routing(version="9999-99-99z"), None),
    (routing(method=None), None),
    (routing(name=None), None),  # tools/call needs its Mcp-Name
    (routing("prompts/get", None), None),
    (routing("resources/read", None), None),
])  # fmt: skip
def test_trusted_headers_classify_only_a_routing_version_with_every_required_header(
    headers: Headers, operation: Operation | None
) -> None:
    assert mcp.trusted_operation(headers) == operation


def test_a_duplicated_protocol_version_is_a_mismatch_when_trusting_or_checking() -> None:
    headers = {**routing(), "mcp-protocol-version": [V, "2025-11-25"]}
    with pytest.raises(errors.HeaderMismatch):
        mcp.trusted_operation(headers)
    assert mismatch(headers, body()).request_id == 1


def test_the_trusted_path_never_looks_at_the_body() -> None:
    """The hot path: no body argument at all, so no read and no parse."""
    assert mcp.trusted_operation.__code__.co_argcount == 1


@pytest.mark.parametrize("version,expected", [
    ("2026-07-28", True), ("2026-07-29", True), ("2030-01-01", True),
    ("2026-07-27", False), ("2025-11-25", False), ("2024-11-05", False),
    ("", False), ("latest", False), ("2026-07-28x", False), ("x2026-07-28", False), ("3000", False),
])  # fmt: skip
def test_protocol_versions_compare_as_iso_dates(version: str, expected: bool) -> None:
    assert mcp.routing_version(version) is expected


# --- check_agreement: headers against the body ---------------------------------------------------


@pytest.mark.parametrize("headers,raw", [
    ({}, body()),  # an older client: no headers
    (routing(version=None), body()),
    (routing(version="2025-11-25"), body()),
    (routing(), body()),
    (routing(name=sentinel("read_file")), body()),
    (routing(name=sentinel("Hello, 世界")), body(name="Hello, 世界")),
    (routing(name=sentinel(" padded ")), body(name=" padded ")),
    (routing(name=sentinel("=?base64?literal?=")), body(name="=?base64?literal?=")),
    (routing("resources/read", "file:///x"), body("resources/read", "file:///x")),
    (routing("tools/list", None), body("tools/list", None)),
    ({"mcp-method": ["tools/call"]}, body()),  # older version: Mcp-Name not required
    ({"mcp-name": ["read_file"]}, body()),  # older version: Mcp-Method not required
    (routing(version="2025-11-25", name=None), body()),
])  # fmt: skip
def test_headers_that_agree_with_the_body_pass(headers: Headers, raw: bytes) -> None:
    mcp.check_agreement(headers, mcp.read_message(raw))


@pytest.mark.parametrize("headers,raw", [
    (routing("tools/list", None), body()),  # lying about the method
    (routing(name="read_file"), body(name="delete_repo")),  # lying about the name
    (routing(name="read_file", version="2025-11-25"), body(name="delete_repo")),  # present: checked in any version
    (routing(name="read_file", version=None), body(name="delete_repo")),
    ({"mcp-method": ["tools/list"]}, body()),
    ({"mcp-name": ["read_file"]}, body(name="delete_repo")),
    (routing("Tools/Call"), body()),  # values are case-sensitive
    (routing(name="Read_File"), body()),
    (routing(name=sentinel("read_file ")), body()),
    (routing(name=sentinel("ｒead_file")), body()),
    (routing(name="=?base64?cmVhZF9maWxl?="), body(name="=?base64?cmVhZF9maWxl?=")),  # a literal must be encoded
    (routing(name="read_file"), body(name=None)),  # the body has no name
    (routing(name="read_file"), body(name=42)),
    (routing(name="read_file"), body(name="read_file", key="uri")),
    (routing("tools/list", "read_file"), body("tools/list", None)),  # a name the method cannot have
    (routing(method=None), body()),  # routing version: Mcp-Method required
    (routing(name=None), body()),  # and Mcp-Name for tools/call
    (routing(name=None), body(name=None)),
    (routing("prompts/get", None), body("prompts/get", "p")),
    (routing("resources/read", None), body("resources/read", "file:///x")),
    (routing(version="2027-01-01", method=None), body("tools/list", None)),
    ({"mcp-protocol-version": [V]}, b'{"method":"notifications/initialized"}'),  # notifications too
    (routing("tools/call", "read_file"), b'{"method":"notifications/initialized"}'),
])  # fmt: skip
def test_headers_that_disagree_with_the_body_or_are_missing_are_a_mismatch(headers: Headers, raw: bytes) -> None:
    refusal = mismatch(headers, raw)
    expected_id = json.loads(raw).get("id")
    assert json.loads(refusal.body()) == {
        "jsonrpc": "2.0",
        "id": expected_id,
        "error": {"code": -32020, "message": refusal.description},
    }


def test_malformed_headers_are_a_mismatch_that_echoes_the_request_id() -> None:
    refusal = mismatch({"mcp-method": ["tools/call", "tools/call"]}, body())
    assert refusal.request_id == 1 and "repeated" in refusal.description
    assert mismatch(routing(name="=?base64?YWJ=?="), body(name="ab")).request_id == 1
    assert mismatch(routing(name="=?base64?YWI=?="), body(name="ba", id="x")).request_id == "x"


BATCH = b'[{"id":1,"method":"tools/call","params":{"name":"read_file"}},{"id":2,"method":"tools/list"}]'


def test_a_batch_without_routing_headers_under_an_older_version_passes() -> None:
    for headers in ({}, {"mcp-protocol-version": ["2025-03-26"]}):
        mcp.check_agreement(headers, mcp.read_message(BATCH))


@pytest.mark.parametrize("headers", [
    {"mcp-protocol-version": [V]},  # 2026-07-28 bodies are single messages: the headers cannot mirror several
    routing(),
    routing(version="2025-11-25"),
    {"mcp-method": ["tools/call"]},
    {"mcp-name": ["read_file"]},
])  # fmt: skip
def test_a_batch_with_routing_headers_or_a_routing_version_is_a_mismatch(headers: Headers) -> None:
    assert mismatch(headers, BATCH).request_id is None


def test_a_batch_of_one_is_held_to_the_rules_of_its_member() -> None:
    single = b'[{"id":1,"method":"tools/call","params":{"name":"read_file"}}]'
    assert mcp.read_message(single) == Message((Operation("tools/call", "read_file"),), None)
    mcp.check_agreement(routing(), mcp.read_message(single))
    assert mismatch(routing(name="delete_repo"), single).request_id is None
    assert mismatch({"mcp-protocol-version": [V]}, single).request_id is None


def test_render_sends_the_refusals_json_rpc_body() -> None:
    response = gateway.render(errors.HeaderMismatch(3), None, None)
    assert (response.status, response.headers["Content-Type"]) == (400, "application/json")
    assert "WWW-Authenticate" not in response.headers and response.headers["Cache-Control"] == "no-store"
    assert json.loads(response.body)["error"]["code"] == -32020
    assert gateway.render(errors.InvalidToken(), None, None).body == errors.InvalidToken().body()


# --- property: the classification is the body's truth, or a refusal -------------------------------

NAMES = ["read_file", "delete_repo", "Read_File", "read_file ", " read_file", "", "ü", "Hello, 世界", "=?base64?x?=",
         "file:///a,b", "read\nfile", "a\x00b", "\ud800", "ｒead_file"]  # fmt: skip
METHODS = ["tools/call", "tools/list", "prompts/get", "resources/read", "Tools/call", "notifications/x", "a,b", ""]


def random_name_value(rng: random.Random) -> Any:
    return rng.choice([*NAMES, None, 42, ["read_file"], "".join(rng.choices(string.printable, k=rng.randint(0, 6)))])


def random_message(rng: random.Random) -> Any:
    method: Any = rng.choice([*METHODS, None, 1])
    member: dict[str, Any] = {"jsonrpc": "2.0"}
    if rng.random() < 0.8:
        member["id"] = rng.choice([1, "x", None, 2.5])
    if method is not None:
        member["method"] = method
    if rng.random() < 0.9:
        member["params"] = {rng.choice(["name", "uri", "Name"]): random_name_value(rng)}
    return member


def random_document(rng: random.Random) -> Any:
    return random_message(rng) if rng.random() < 0.85 else [random_message(rng) for _ in range(rng.randint(0, 3))]


def random_raw(rng: random.Random, document: Any) -> bytes:
    raw = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    trick = rng.random()
    if trick < 0.05:
        raw = raw.replace(b'"method"', b'"method":"tools/list","method"', 1)  # duplicate key
    elif trick < 0.08:
        raw = b"\xef\xbb\xbf" + raw
    elif trick < 0.1:
        raw = raw.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
    elif trick < 0.12:
        raw = raw[: rng.randint(0, len(raw))]
    return raw


def random_name_header(rng: random.Random) -> str:
    value = rng.choice([*NAMES, "".join(rng.choices(string.printable, k=rng.randint(0, 6)))])
    encoded = "=?base64?" + base64.b64encode(value.encode("utf-8", "surrogatepass")).decode() + "?="
    return rng.choice([value, encoded, encoded.upper(), encoded.replace("=?", "", 1), encoded[:-3] + "?="])


def random_headers(rng: random.Random, document: Any) -> dict[str, list[str]]:
    """Random routing headers, half of the time mirroring (part of) the body the way a client would."""
    mirror = document if isinstance(document, dict) else {}
    found = mirror.get("params")
    params: dict[Any, Any] = found if isinstance(found, dict) else {}
    method, name = mirror.get("method"), next(iter(params.values()), None)
    headers: dict[str, list[str]] = {}
    for key, values, faithful in (
        ("mcp-protocol-version", [V, "2025-11-25", "2027-01-01", "2026-07-28 ", "x"], V),
        ("mcp-method", METHODS, method),
        ("mcp-name", None, sentinel_or_plain(name) if isinstance(name, str) else None),
    ):
        count = rng.choice([0, 1, 1, 1, 1, 1, 2])
        if faithful is not None and count == 1 and rng.random() < 0.5:
            headers[key] = [faithful]
        else:
            headers[key] = [random_name_header(rng) if values is None else rng.choice(values) for _ in range(count)]
    return headers


def sentinel_or_plain(name: str) -> str:
    """The SDK client's rule (Value Encoding): plain when it survives a header, else the sentinel."""
    safe = all(" " <= c <= "~" for c in name) and name == name.strip() and not name.startswith("=?base64?")
    return name if safe else "=?base64?" + base64.b64encode(name.encode("utf-8", "surrogatepass")).decode() + "?="


def truth(raw: bytes) -> tuple[Operation, ...]:
    """An independent reading of the body: what a JSON-RPC server would execute."""
    document = json.loads(raw)
    members = document if isinstance(document, list) else [document]
    operations = []
    for member in members:
        params = member.get("params")
        field = mcp.NAME_PARAMS.get(member["method"])
        name = params.get(field) if field and isinstance(params, dict) else None
        operations.append(Operation(member["method"], name if isinstance(name, str) else None))
    return tuple(operations)


def test_property_the_classification_is_the_bodys_truth_or_a_refusal() -> None:
    """For random bodies and headers (lies, duplicates, encodings, JSON tricks, batches): whatever
    passes read_message is exactly what the body says; whatever passes check_agreement (the upstream's
    own check, for the trusted path) has header and trusted classifications equal to the body's."""
    rng = random.Random(12)
    outcomes = {"refused": 0, "agreed": 0, "trusted": 0}
    for _ in range(20_000):
        document = random_document(rng)
        raw, headers = random_raw(rng, document), random_headers(rng, document)
        try:
            message = mcp.read_message(raw)
            assert message.operations == truth(raw)
            mcp.check_agreement(headers, message)
        except (errors.InvalidMessage, errors.HeaderMismatch):
            outcomes["refused"] += 1
            continue
        outcomes["agreed"] += 1
        operation = mcp.header_operation(headers)
        if operation is not None:
            (expected,) = message.operations  # headers on a batch never agree
            assert operation.method == expected.method  # without Mcp-Name (older versions) only the method
            assert operation.name in (None, expected.name)
        trusted = mcp.trusted_operation(headers)
        if trusted is not None:
            outcomes["trusted"] += 1
            assert message.operations == (trusted,)
    assert min(outcomes.values()) > 100, outcomes  # every branch was exercised


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":7,"result":{"content":[]}}',
        b'{"jsonrpc":"2.0","id":"a","error":{"code":-1,"message":"declined"}}',
    ],
)
def test_a_posted_json_rpc_response_is_no_operation(body: bytes) -> None:
    """Clients before 2026-07-28 POST their answers to a server's requests (sampling, elicitation):
    those perform no operation, so only the route's scopes apply; routing headers on them lie."""
    from kong_plugins.ai_mcp_oauth2.mcp import RESPONSE

    message = mcp.read_message(body)
    assert message.operations == (RESPONSE,)
    mcp.check_agreement({}, message)
    with pytest.raises(errors.HeaderMismatch):
        mcp.check_agreement({"mcp-method": ["tools/call"]}, message)


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":7,"result":{},"error":{"code":1,"message":"x"}}',  # both
        b'{"jsonrpc":"2.0","result":{}}',  # no id
        b'{"jsonrpc":"2.0","id":7}',  # neither
    ],
)
def test_what_is_neither_a_request_nor_a_response_is_refused(body: bytes) -> None:
    with pytest.raises(errors.InvalidMessage):
        mcp.read_message(body)
