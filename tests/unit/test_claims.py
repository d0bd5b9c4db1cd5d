"""Behaviour §8: claim paths and header value encoding."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.claims import header_value, number, resolve

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
