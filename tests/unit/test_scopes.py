"""Behaviour §12: scopes granted, needed per route and per MCP operation, the hierarchy, the challenge."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import ConfigError, InsufficientScope
from kong_plugins.ai_mcp_oauth2.mcp import Operation
from kong_plugins.ai_mcp_oauth2.scopes import ScopeRules, advertised, granted

from .conftest import kong_config

Op = Operation


def rules(**overrides: Any) -> ScopeRules:
    return ScopeRules(parse_config(kong_config(**overrides)))


def refused_with(rule: ScopeRules, claims: dict[str, Any], *operations: Op | None) -> tuple[str, ...]:
    with pytest.raises(InsufficientScope) as info:
        rule.check(claims, list(operations) or [None])
    assert info.value.status == 403 and info.value.error == "insufficient_scope"
    assert info.value.scopes is not None
    return info.value.scopes


# --- granted scopes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "claims,path,expected",
    [
        ({"scope": "a b  c"}, ["scope"], {"a", "b", "c"}),
        ({"scope": ["a", "b"]}, ["scope"], {"a", "b"}),
        ({"scp": ["a", "b"]}, ["scope"], {"a", "b"}),  # Entra ID, Okta: only with the default path
        ({"scp": "a b"}, ["scope"], {"a", "b"}),
        ({"scope": "a", "scp": ["b"]}, ["scope"], {"a"}),  # never merged
        ({"scope": 7, "scp": ["b"]}, ["scope"], set()),  # a scope claim of another type grants nothing
        ({"scp": ["b"]}, ["scopes"], set()),  # scp only for the default path
        ({"realm": {"scopes": "x y"}}, ["realm", "scopes"], {"x", "y"}),
        ({"scope": ["a", 1]}, ["scope"], set()),
        ({"scope": {"a": 1}}, ["scope"], set()),
        ({}, ["scope"], set()),
    ],
)
def test_granted_scopes_are_read_from_the_claim_in_both_forms(
    claims: dict[str, Any], path: list[str], expected: set[str]
) -> None:
    assert granted(claims, path) == expected


# --- route and operation requirements ------------------------------------------------------------
def test_without_rules_nothing_is_needed_and_nothing_read() -> None:
    rule = rules()
    assert not rule.active and not rule.uses_operations
    rule.check({}, [Op("tools/call", "delete_repo")])  # no exception


def test_route_entries_are_alternatives_of_sets() -> None:
    rule = rules(scopes_required=["a b", "c"])
    rule.check({"scope": "a b"}, [None])
    rule.check({"scope": "c"}, [None])
    assert refused_with(rule, {"scope": "a"}) == ("a", "b")  # the first alternative, in config order
    assert refused_with(rule, {"scope": "b x"}) == ("a", "b")


OPERATIONS = [
    {"method": "tools/call", "scopes_required": ["tools:call"]},
    {"method": "tools/call", "name": "repo_*", "scopes_required": ["repo:read"]},
    {"method": "tools/call", "name": "repo_admin_*", "scopes_required": ["repo:admin"]},
    {"method": "tools/call", "name": "repo_admin_delete", "scopes_required": ["repo:delete"]},
    {"method": "resources/read", "name": "file:///etc/*", "scopes_required": ["files:system"]},
]


@pytest.mark.parametrize(
    "operation,needs",
    [
        (Op("tools/call", "repo_admin_delete"), ("repo:delete",)),  # exact name first
        (Op("tools/call", "repo_admin_rename"), ("repo:admin",)),  # then the longest prefix
        (Op("tools/call", "repo_list"), ("repo:read",)),
        (Op("tools/call", "weather"), ("tools:call",)),  # then the method alone
        (Op("tools/call", None), ("tools:call",)),
        (Op("resources/read", "file:///etc/passwd"), ("files:system",)),
        (Op("resources/read", "file:///home/x"), ()),  # no entry: only the route's
        (Op("tools/list"), ()),
        (Op("Tools/Call", "repo_admin_delete"), ()),  # methods are case-sensitive
        (Op("tools/call", "REPO_admin_delete"), ("tools:call",)),  # and names
    ],
)
def test_the_most_specific_operation_entry_applies(operation: Op, needs: tuple[str, ...]) -> None:
    rule = rules(mcp_operations=OPERATIONS)
    assert rule.active and rule.uses_operations
    assert rule.hint(operation) == needs
    if needs:
        assert refused_with(rule, {"scope": "unrelated"}, operation) == needs
        rule.check({"scope": " ".join(needs)}, [operation])
    else:
        rule.check({"scope": ""}, [operation])


def test_operation_scopes_are_needed_besides_the_routes_and_the_challenge_names_both() -> None:
    rule = rules(scopes_required=["mcp"], mcp_operations=OPERATIONS)
    op = Op("tools/call", "repo_list")
    assert refused_with(rule, {"scope": "mcp"}, op) == ("mcp", "repo:read")
    assert refused_with(rule, {"scope": "repo:read"}, op) == ("mcp", "repo:read")
    rule.check({"scope": "mcp repo:read"}, [op])


def test_a_batch_needs_what_each_member_needs() -> None:
    rule = rules(mcp_operations=OPERATIONS)
    batch = [Op("tools/call", "repo_list"), Op("tools/call", "repo_admin_delete"), Op("tools/list")]
    assert refused_with(rule, {"scope": "repo:read"}, *batch) == ("repo:read", "repo:delete")
    rule.check({"scope": "repo:read repo:delete"}, batch)


# --- hierarchy ------------------------------------------------------------------------------------
HIERARCHY = [
    {"scope": "repo", "implies": ["repo:read", "repo:write"]},
    {"scope": "repo:write", "implies": ["repo:delete"]},
    {"scope": "admin", "implies": ["repo"]},
]


@pytest.mark.parametrize(
    "held,allowed",
    [
        ("repo", True),
        ("admin", True),  # admin -> repo -> repo:write -> repo:delete, and repo:read
        ("repo:write repo:read", True),
        ("repo:delete repo:read", True),
        ("repo:write", False),
        ("repo:read", False),
        ("repo:delete", False),  # never the reverse
    ],
)
def test_a_broader_scope_implies_narrower_ones_transitively_never_the_reverse(held: str, allowed: bool) -> None:
    rule = rules(scopes_required=["repo:delete repo:read"], scope_hierarchy=HIERARCHY)
    if allowed:
        rule.check({"scope": held}, [None])
    else:
        assert refused_with(rule, {"scope": held}) == ("repo:delete", "repo:read")


@pytest.mark.parametrize(
    "hierarchy",
    [
        [{"scope": "a", "implies": ["a"]}],
        [{"scope": "a", "implies": ["b"]}, {"scope": "b", "implies": ["c"]}, {"scope": "c", "implies": ["a"]}],
    ],
)
def test_a_cycle_in_the_hierarchy_is_a_config_error_naming_it(hierarchy: list[dict[str, Any]]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(kong_config(scope_hierarchy=hierarchy))
    assert info.value.field == "scope_hierarchy"


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"scopes_required": ["a  b"]}, "scopes_required[1]"),
        ({"scopes_required": ['a"']}, "scopes_required[1]"),
        ({"scopes_required": []}, "scopes_required"),
        ({"mcp_operations": [{"method": "tools/call"}]}, "mcp_operations[1].scopes_required"),
        ({"mcp_operations": [{"scopes_required": ["a"]}]}, "mcp_operations[1].method"),
        (
            {"mcp_operations": [{"method": "tools/call", "name": "x*", "scopes_required": ["a"]}] * 2},
            "mcp_operations[2]",
        ),
        (
            {"mcp_operations": [{"method": "tools/call", "name": "x", "scopes_required": ["a"]}] * 2},
            "mcp_operations[2]",
        ),
        (
            {"mcp_operations": [{"method": "resources/subscribe", "name": "file:///x", "scopes_required": ["a"]}]},
            "mcp_operations[1].name",
        ),
        ({"mcp_operations": [{"method": "m", "scopes_required": ["a"]}] * 2}, "mcp_operations[2]"),
        ({"scope_hierarchy": [{"scope": "a", "implies": []}]}, "scope_hierarchy[1].implies"),
        ({"scope_hierarchy": [{"scope": "a b", "implies": ["c"]}]}, "scope_hierarchy[1].scope"),
        ({"scopes_claim": []}, "scopes_claim"),
        ({"mcp_trust_routing_headers": "yes"}, "mcp_trust_routing_headers"),
    ],
)
def test_bad_scope_rules_are_config_errors_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(kong_config(**overrides))
    assert info.value.field == field


# --- what is advertised ---------------------------------------------------------------------------
def test_offline_access_is_never_advertised() -> None:
    assert advertised(["a", "offline_access", "b"]) == ("a", "b")
    rule = rules(scopes_required=["offline_access mcp"])
    assert refused_with(rule, {"scope": ""}) == ("mcp",)
    assert rule.hint(None) == ("mcp",)


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passw%64",  # percent-encoded
        "file:///public/../etc/passwd",  # a dot segment climbing into the protected tree
        "file:///etc/./passwd",
        "file:///public/%2e%2e/etc/passwd",  # both
    ],
)
def test_a_resource_uri_needs_what_each_of_its_normal_forms_needs(uri: str) -> None:
    rule = rules(mcp_operations=OPERATIONS)
    assert refused_with(rule, {"scope": ""}, Op("resources/read", uri)) == ("files:system",)
    rule.check({"scope": "files:system"}, [Op("resources/read", uri)])


def test_a_name_with_dots_that_are_not_segments_needs_just_its_own_entry() -> None:
    rule = rules(mcp_operations=OPERATIONS)
    assert rule.needed([Op("tools/call", "repo_v1.2")]) == [("repo:read",)]
    assert rule.needed([Op("resources/read", "file:///home/x.txt")]) == []
