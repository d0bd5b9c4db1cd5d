"""RFC 6750 §2.1 token extraction and §3 challenges (behaviour §4)."""

from __future__ import annotations

import pytest

from kong_plugins.ai_mcp_oauth2.bearer import MAX_TOKEN_BYTES, challenge, extract_token, well_formed
from kong_plugins.ai_mcp_oauth2.errors import InvalidRequest, InvalidToken, MissingToken


@pytest.mark.parametrize("value", ["Bearer abc.def-ghi_jkl~+/==", "bearer abc", "BEARER abc", "Bearer   abc  "])
def test_bearer_scheme_is_case_insensitive_and_token_is_returned(value: str) -> None:
    assert extract_token({"authorization": [value]}) in ("abc.def-ghi_jkl~+/==", "abc")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": []},
        {"authorization": ["Basic dXNlcjpwYXNz"]},
        {"authorization": ["DPoP abc"]},
        {"authorization": ["Bearerabc"]},
    ],
)
def test_absent_or_non_bearer_credentials_are_a_missing_token(headers: dict[str, list[str]]) -> None:
    with pytest.raises(MissingToken):
        extract_token(headers)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a,Bearer b",
        'Bearer "abc"',
        "Bearer ab=c",
        "Bearer a\x00b",
        "Bearer tök",
    ],
)
def test_ill_formed_bearer_tokens_are_invalid_requests(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        extract_token({"authorization": [value]})
    assert info.value.status == 400 and info.value.error == "invalid_request"
    empty = value.strip() == "Bearer"
    assert info.value.description == ("The Bearer token is empty" if empty else "The Bearer token is not well-formed")


@pytest.mark.parametrize("token,expected", [
    ("abc", True), ("eyJ.a-b_c~d+e/f.g==", True), ("a=", True),
    ("", False), ("=", False), ("a=b", False), ("a b", False), ("a\tb", False), ("abc\n", False),
    ("ab\udcffcd", False),  # a non-UTF-8 header byte, as the plugin server carries it (surrogateescape)
    ("tök", False), ("a\x00", False),
])  # fmt: skip
def test_well_formed_is_rfc_6750_b64token_and_ascii_only(token: str, expected: bool) -> None:
    assert well_formed(token) is expected


def test_several_authorization_headers_are_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as info:
        extract_token({"authorization": ["Bearer a", "Bearer b"]})
    assert info.value.status == 400 and info.value.error == "invalid_request"
    assert info.value.description == "Only one Authorization header is allowed"


def test_tokens_above_16_kib_are_refused_before_parsing() -> None:
    extract_token({"authorization": ["Bearer " + "a" * MAX_TOKEN_BYTES]})
    with pytest.raises(InvalidToken) as info:
        extract_token({"authorization": ["Bearer " + "a" * (MAX_TOKEN_BYTES + 1)]})
    assert info.value.status == 401 and info.value.description == "The access token is too large"


def test_challenge_without_credentials_has_no_error_code() -> None:
    assert challenge([], "https://gw/.well-known/oauth-protected-resource/mcp", ()) == (
        'Bearer resource_metadata="https://gw/.well-known/oauth-protected-resource/mcp"'
    )


def test_challenge_with_error_and_scopes() -> None:
    value = challenge([("error", "invalid_token"), ("error_description", "bad")], "https://gw/m", ("a", "b:c"))
    assert (
        value
        == 'Bearer error="invalid_token", error_description="bad", resource_metadata="https://gw/m", scope="a b:c"'
    )


def test_challenge_values_are_restricted_to_rfc_6750_characters() -> None:
    value = challenge([("error_description", 'quote " back \\ newline \r\n é')], "https://gw/m", ())
    assert value == 'Bearer error_description="quote ? back ? newline ?? ?", resource_metadata="https://gw/m"'
