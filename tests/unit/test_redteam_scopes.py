"""Red team of behaviour §12 (issue 12): each test is a finding and fails against the code it was written for.

Ranked by severity, highest first. Each names the one-line fix it suggests.
"""

from __future__ import annotations

import json

import pytest
from mcp.shared.uri_template import UriTemplate

from kong_plugins.ai_mcp_oauth2 import mcp, scopes
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import ConfigError, Response
from kong_plugins.ai_mcp_oauth2.gateway import LetThrough

from .conftest import kong_config
from .test_gateway_scopes import OPERATIONS, call, post, run


# --- 1. HIGH: a body with neither Content-Length nor Transfer-Encoding is never read ----------------
# Over HTTP/2 and HTTP/3 (Kong's default proxy_listen has `8443 http2 ssl`) a POST body may come
# with neither header (behaviour §4.8 says so itself); nginx buffers it and proxies it with a length
# it computes. `has_body` looks at the headers only, so the request "names no operation" and needs
# only the route's scopes: a token with `tools` calls delete_repo (needs repo:admin).
# Fix: when neither header is present, read the body anyway (b"" = no operation), or ask
# kong.request.get_http_version()/get_method() before deciding the request is bodiless.
@pytest.mark.parametrize("trust", [False, True])
def test_an_http2_post_without_content_length_is_still_classified_from_its_body(trust: bool) -> None:
    request = post(call("delete_repo"), length=False)  # HTTP/2: DATA frames, no content-length header
    decision = run(request, "tools", mcp_operations=OPERATIONS, mcp_trust_routing_headers=trust)
    assert not isinstance(decision, LetThrough), "delete_repo proxied with only the `tools` scope"
    assert decision.status == 403


# --- 2. MEDIUM: a resource URI rule is bypassed by percent-encoding ------------------------------------
# Rules compare params.uri code point for code point, but the MCP Python SDK's resource templates
# percent-decode what they match (mcp/shared/uri_template.py `unquote`), so `repo://acme/secret%73`
# reads the same resource as `repo://acme/secrets`. The routing headers do not help: a client
# mirrors the same raw string in Mcp-Name (printable ASCII, sent plain).
# Fix: for resources/read, also match the rules against the percent-decoded URI (urllib.parse.unquote)
# and require what both forms need, or refuse with 400 a URI whose percent-encoding a rule could hide.
RESOURCE_OPERATIONS = [
    {"method": "resources/read", "scopes_required": ["read"]},
    {"method": "resources/read", "name": "repo://acme/secrets", "scopes_required": ["admin"]},
]


def read(uri: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}}).encode()


@pytest.mark.parametrize("uri", ["repo://acme/secret%73", "repo://%61cme/secrets"])
def test_a_percent_encoded_resource_uri_needs_what_the_resource_it_reads_needs(uri: str) -> None:
    upstream = UriTemplate.parse("repo://{owner}/{name}")
    assert upstream.match(uri) == upstream.match("repo://acme/secrets")  # the SDK reads the protected resource
    decision = run(post(read(uri)), "read", mcp_operations=RESOURCE_OPERATIONS)
    assert not isinstance(decision, LetThrough), f"{uri} read without `admin`"
    assert decision.status in (400, 403)


# --- 3. MEDIUM: a `name` on a method whose name is never read silently never matches (fail open) -----
# The issue documents `name` as "the tool or prompt name, or the resource URI"; resources/subscribe
# (and resources/unsubscribe, completion/complete...) carry a resource URI too, but only tools/call,
# prompts/get and resources/read have their name read (mcp.NAME_PARAMS). The config loads, the rule
# never applies, and the operation needs only the route's scopes.
# Fix: a ConfigError for an mcp_operations entry with `name` on a method outside mcp.NAME_PARAMS
# (or read params.uri for resources/subscribe and resources/unsubscribe as well).
def test_a_name_rule_on_a_method_whose_name_is_never_read_does_not_fail_open() -> None:
    operations = [{"method": "resources/subscribe", "name": "file:///secret", "scopes_required": ["admin"]}]
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": "file:///secret"}}
    ).encode()
    decision = run(post(body), "mcp", mcp_operations=operations)
    assert isinstance(decision, Response), "resources/subscribe file:///secret proxied without `admin`"
    assert decision.status in (403, 500)


# --- 4. LOW: CPU per request grows with batch members x prefix entries ---------------------------------
# Any token holder can post a 1 MiB batch (~16k members); each member scans every prefix entry of
# its method: with 1000 prefix entries this is ~1.8 s of plugin-server CPU per request (5000: ~6.5 s),
# while the GIL stalls every other request of the plugin server.
# Fix: look up each distinct Operation once (set(message.operations)) and index prefixes (a trie or
# bisect over the sorted prefixes) instead of a linear scan; optionally cap the batch length.
def test_a_large_batch_against_many_prefix_rules_looks_up_each_distinct_operation_once_by_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counted, not timed: each distinct operation is looked up once, and a lookup costs one dict probe
    per distinct prefix length, not one comparison per prefix entry."""
    operations = [{"method": "tools/call", "name": f"p{i:05d}_*", "scopes_required": ["s"]} for i in range(1000)]
    rules = scopes.ScopeRules(parse_config(kong_config(mcp_operations=operations)))
    assert list(rules.prefixes["tools/call"]) == [7]  # 1000 prefixes of one length: one probe per lookup
    member = b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"zz"}},'
    body = b"[" + member * (1_000_000 // len(member)) + member[:-1] + b"]"
    message = mcp.read_message(body)
    assert len(message.operations) > 15_000
    looked_up: list[object] = []
    original = rules.operation_entries
    monkeypatch.setattr(rules, "operation_entries", lambda op: looked_up.append(op) or original(op))
    assert rules.needed(message.operations) == []
    assert len(looked_up) == 1
    assert rules.operation_entries(mcp.Operation("tools/call", "p00042_x")) == ("s",)


# --- 5. LOW: the 403 for an alternative led by offline_access names no scope at all -------------------
# `scopes_required: ["offline_access", "mcp"]` ((offline_access) or (mcp)): the challenged
# alternative is the first, whose only scope is never advertised, so the 403 carries no `scope`
# and the client has nothing to step up to (MCP 2026-07-28 step-up), although `mcp` would do.
# The start-up warning covers scopes_supported only, not scopes_required.
# Fix: challenge the first alternative that still names a scope once offline_access is removed,
# and warn at start for offline_access in any scopes_required.
def test_a_403_names_a_scope_the_client_can_step_up_to() -> None:
    decision = run(post(call("read_file")), "other", scopes_required=["offline_access", "mcp"])
    assert isinstance(decision, Response) and decision.status == 403
    assert decision.headers["WWW-Authenticate"].endswith('scope="mcp"')


# --- 6. LOW: a long acyclic scope_hierarchy is not a cycle, but fails as an unnamed RecursionError -----
# `implied` closes the hierarchy recursively: a chain of ~1000 scopes raises RecursionError, which
# parse_config lets escape (the Gateway turns it into "config: could not be read (RecursionError)",
# which names no field).
# Fix: an iterative depth-first closure (or a ConfigError naming scope_hierarchy past a depth bound).
def test_a_long_scope_hierarchy_chain_loads_or_is_a_config_error_naming_the_field() -> None:
    chain = [{"scope": f"s{i}", "implies": [f"s{i + 1}"]} for i in range(1500)]
    try:
        config = parse_config(kong_config(scope_hierarchy=chain))
    except ConfigError as error:
        assert error.field == "scope_hierarchy"
        return
    rules = scopes.ScopeRules(config)
    assert "s1500" in rules.expand(frozenset({"s0"}))
