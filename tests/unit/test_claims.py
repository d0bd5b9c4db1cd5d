"""Behaviour §5/§6: the claim rules JWTs and introspection share; behaviour §8: claim paths and header
value encoding."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.claims import ClaimRules, header_value, number, resolve
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import InvalidToken

from .conftest import kong_config

HUGE = 10**400  # valid JSON; no float can hold it

CLAIMS = {"sub": "alice", "realm_access": {"roles": ["admin", "user"], "id": 7}, "n": None, "list": "x"}


@pytest.mark.parametrize("path,expected", [
    (("sub",), "alice"), (("realm_access", "roles"), ["admin", "user"]), (("realm_access", "id"), 7),
    (("missing",), None), (("realm_access", "missing"), None), (("sub", "deeper"), None), (("n",), None),
    (("list", "0"), None),
])  # fmt: skip
def test_resolve_walks_nested_objects_only(path: tuple[str, ...], expected: Any) -> None:
    assert resolve(CLAIMS, path) == expected


@pytest.mark.parametrize("value,expected", [
    ("alice", "alice"), (7, "7"), (1.5, "1.5"), (True, "true"), (False, "false"),
    (["admin", "user"], "admin,user"), (["a,b", "c"], '["a,b","c"]'), ([1, True, "x"], "1,true,x"),
    ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'), ([{"a": 1}], '[{"a":1}]'), ([], ""),
    ("été", "été"), (None, None),
    ("evil\r\nX-Injected: 1", None), ("nul\x00", None), (["ok", "bad\n"], None), ({"k": "v\r"}, '{"k":"v\\r"}'),
    ("tab\tok", "tab\tok"), ("bell\x07", None), ("lone \ud800 surrogate", None), (["\udfff"], None),
])  # fmt: skip
def test_header_values_are_encoded_and_never_carry_line_breaks(value: Any, expected: str | None) -> None:
    assert header_value(value) == expected


@pytest.mark.parametrize("value,expected", [
    (1_800_000_000, 1_800_000_000.0), (1.5, 1.5), (-3, -3.0), pytest.param(10**308, 1e308, id="10**308"), (1e308, 1e308),
    pytest.param(HUGE, None, id="huge"), pytest.param(-HUGE, None, id="-huge"), (float("inf"), None), (float("-inf"), None), (float("nan"), None),
    (True, None), (False, None), ("1800000000", None), (None, None), ([1], None),
])  # fmt: skip
def test_number_is_a_finite_float_or_none_and_never_raises(value: Any, expected: float | None) -> None:
    """RFC 7519 §2 NumericDate: a 400-digit integer is valid JSON, and float() of it raised OverflowError."""
    assert number(value) == expected


def rules(**config: Any) -> ClaimRules:
    options = {"resource": "https://mcp.example.com/mcp", "jwt_claims_leeway": 5, **config}
    return ClaimRules(parse_config(kong_config(**options)), unusable=lambda name: ValueError(name))


def test_times_are_checked_with_the_leeway_and_an_unusable_one_is_the_callers_refusal() -> None:
    now = 1_800_000_000.0
    assert rules().expires_at({"exp": now - 4}, now) == now + 1
    assert rules().expires_at({}, now) is None
    with pytest.raises(InvalidToken, match="expired"):
        rules().expires_at({"exp": now - 5}, now)
    rules().check_not_before({"nbf": now + 5}, now)
    with pytest.raises(InvalidToken, match="not valid yet"):
        rules().check_not_before({"nbf": now + 6}, now)
    with pytest.raises(InvalidToken, match="issued in the future"):
        rules().check_issued_at({"iat": now + 6}, now)
    with pytest.raises(ValueError, match="iat"):
        rules().check_issued_at({"iat": "soon"}, now)


def test_the_issuer_must_be_a_configured_authorization_server_but_for_one_trailing_slash() -> None:
    assert rules().trusted_issuer("https://as.example.com/") == "https://as.example.com"
    for issuer in ("https://as.example.com//", "https://evil.example.com", None, ["https://as.example.com"]):
        with pytest.raises(InvalidToken, match="trusted authorization server"):
            rules().trusted_issuer(issuer)


def test_the_audience_must_name_the_resource_unless_relaxed() -> None:
    rules().check_audience({"aud": ["other", "https://mcp.example.com/mcp/"]})
    for claims in ({"aud": "other"}, {}, {"aud": [1]}, {"aud": {"x": "https://mcp.example.com/mcp"}}):
        with pytest.raises(InvalidToken, match="not intended for this resource"):
            rules().check_audience(claims)
    rules(insecure_relaxed_audience_validation=True).check_audience({})
