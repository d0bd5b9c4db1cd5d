"""Refusals and the responses they render to (errors.py): statuses, RFC 6750 §3 challenge
parameters and their character set, extra headers, the JSON body."""

from __future__ import annotations

import json

import pytest

from kong_plugins.ai_mcp_oauth2 import errors


def test_header_safe_keeps_rfc_6750_characters_and_replaces_the_rest() -> None:
    allowed = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
    assert errors.header_safe(allowed) == allowed
    assert errors.header_safe('a"b\\c\r\nd\u00e9\x00') == "a?b?c??d??"


@pytest.mark.parametrize("refusal,status,error,challenges", [
    (errors.MissingToken(), 401, "unauthorized", True),
    (errors.InvalidRequest(), 400, "invalid_request", True),
    (errors.InvalidToken(), 401, "invalid_token", True),
    (errors.PayloadTooLarge(), 413, "request_too_large", False),
    (errors.LengthRequired(), 411, "length_required", False),
    (errors.Forbidden(), 403, "access_denied", False),
    (errors.Unavailable(), 503, "temporarily_unavailable", False),
    (errors.MethodNotAllowed(), 405, "method_not_allowed", False),
    (errors.Misconfigured(), 500, "server_error", False),
    (errors.InternalError(), 500, "server_error", False),
    (errors.HeaderMismatch(), 400, "invalid_request", False),
    (errors.InvalidMessage(), 400, "invalid_request", False),
])  # fmt: skip
def test_each_refusal_has_its_status_error_and_challenge(
    refusal: errors.Refusal, status: int, error: str, challenges: bool
) -> None:
    assert (refusal.status, refusal.error, refusal.challenges) == (status, error, challenges)


def test_no_error_code_without_credentials_but_error_and_description_for_bad_ones() -> None:
    """RFC 6750 §3.1: a request without credentials gets no error code in the challenge."""
    assert errors.MissingToken().challenge_params() == []
    assert errors.InvalidToken('bad "token"\n').challenge_params() == [
        ("error", "invalid_token"),
        ("error_description", "bad ?token??"),
    ]


def test_extra_headers_and_a_custom_description() -> None:
    assert errors.Unavailable().extra_headers() == {"Retry-After": "5"}
    assert errors.MethodNotAllowed().extra_headers() == {"Allow": "GET, HEAD, OPTIONS"}
    assert errors.InvalidToken().extra_headers() == {}
    custom = errors.Unavailable("The keys could not be obtained")
    assert custom.description == "The keys could not be obtained"
    assert errors.Unavailable().description == "The authorization server could not be reached"  # class text kept


def test_the_json_body_and_the_config_error_naming_its_field() -> None:
    assert json.loads(errors.json_body("invalid_token", "x")) == {"error": "invalid_token", "error_description": "x"}
    error = errors.ConfigError("timeout", "must be positive")
    assert (error.field, error.message, str(error)) == ("timeout", "must be positive", "timeout: must be positive")


def test_the_default_body_is_the_json_error_body() -> None:
    refusal = errors.InvalidToken("expired")
    assert refusal.body() == errors.json_body("invalid_token", "expired")


def test_a_header_mismatch_answers_with_the_json_rpc_error_minus_32020_and_the_request_id() -> None:
    """MCP 2026-07-28 Streamable HTTP, Server Validation: 400 and JSON-RPC error -32020."""
    body = json.loads(errors.HeaderMismatch(7, "Header mismatch: x").body())
    assert body == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32020, "message": "Header mismatch: x"}}
    assert json.loads(errors.HeaderMismatch().body())["id"] is None
    assert json.loads(errors.HeaderMismatch("a").body())["id"] == "a"


def test_an_invalid_message_answers_with_a_json_rpc_parse_or_invalid_request_error_and_a_null_id() -> None:
    body = json.loads(errors.InvalidMessage().body())
    assert body["jsonrpc"] == "2.0" and body["id"] is None
    assert body["error"] == {"code": -32600, "message": errors.InvalidMessage.description}
    parse = json.loads(errors.InvalidMessage("bad", code=errors.InvalidMessage.PARSE_ERROR).body())
    assert parse["error"] == {"code": -32700, "message": "bad"}
