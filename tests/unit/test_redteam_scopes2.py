"""Red team round 2 of behaviour §12 (issue 12): each test is a finding and fails against the code it was written for.

Ranked by severity, highest first. Each names the one-line fix it suggests. The upstream reference is the
MCP Python SDK this repository tests against (``mcp`` 2.3.0): ``ResourceManager.get_resource`` looks a URI
up exactly among concrete resources, then matches it against resource templates with
``mcp.shared.uri_template.UriTemplate.match``, which percent-decodes captured values and ignores a query
string and a fragment.
"""

from __future__ import annotations

import json

import pytest
from mcp.shared.uri_template import UriTemplate

from kong_plugins.ai_mcp_oauth2.errors import Response
from kong_plugins.ai_mcp_oauth2.gateway import LetThrough

from .test_gateway_scopes import post, run


def read(uri: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}}).encode()


# --- 1. MEDIUM: a query string or a fragment takes a resource URI out of its exact rule -------------------
# A template with a query expression, `logs://{service}{?since,level}` (the SDK's own docstring example),
# matches `logs://secret?utm=x`, `logs://secret?` and `logs://secret#f` as {service: "secret"}: the same
# resource as `logs://secret`. The rule for `logs://secret` is exact, the plugin compares the whole string
# (and `_forms` only rewrites names holding `%` or `.`), so the read needs only the method's `read`.
# Fix: in scopes._forms, also look up the URI without its query and fragment (urlsplit(...)._replace(query="",
# fragment="")), requiring what every form needs, as for percent-decoding and dot segments.
LOG_RULES = [
    {"method": "resources/read", "scopes_required": ["read"]},
    {"method": "resources/read", "name": "logs://secret", "scopes_required": ["admin"]},
]


@pytest.mark.parametrize("uri", ["logs://secret?utm=x", "logs://secret?", "logs://secret#f", "logs://secret?level=1#f"])
def test_a_resource_uri_with_a_query_or_fragment_needs_what_the_resource_it_reads_needs(uri: str) -> None:
    template = UriTemplate.parse("logs://{service}{?since,level}")
    assert template.match(uri) is not None and template.match(uri)["service"] == "secret"  # type: ignore[index]
    decision = run(post(read(uri)), "read", mcp_operations=LOG_RULES)
    assert isinstance(decision, Response), f"{uri} read with `read` only; logs://secret needs `admin`"
    assert decision.status == 403


# --- 2. MEDIUM: rule names are not normalised, only request names are ------------------------------------
# Round 1 made a request URI with `%` also match in decoded form. But an operator writes the rule as the
# server lists the resource, percent-encoded (`repo://acme/my%20file`, `repo://acme/a%2Fb`), and the rule
# key is never decoded: the client sends the raw form (`my file`, a space is legal in a JSON string and in
# Mcp-Name) or another case of the escape (`%2f`), no form equals the rule's key, and the SDK's template
# decodes both to the same {name}. Only the method's `read` is needed.
# Fix: in ScopeRules.__init__, key exact and prefix rules by unquote(_without_dot_segments(name)) as well
# (or compare the decoded forms on both sides), so any spelling of a rule's URI finds it.
ENCODED_RULES = [
    {"method": "resources/read", "scopes_required": ["read"]},
    {"method": "resources/read", "name": "repo://acme/my%20file", "scopes_required": ["admin"]},
    {"method": "resources/read", "name": "repo://acme/a%2Fb", "scopes_required": ["admin"]},
]


@pytest.mark.parametrize(
    "uri,listed", [("repo://acme/my file", "repo://acme/my%20file"), ("repo://acme/a%2fb", "repo://acme/a%2Fb")]
)
def test_a_rule_written_percent_encoded_holds_for_every_spelling_of_its_uri(uri: str, listed: str) -> None:
    template = UriTemplate.parse("repo://{owner}/{name}")
    assert template.match(uri) == template.match(listed)  # the SDK reads the same resource
    assert isinstance(run(post(read(listed)), "read", mcp_operations=ENCODED_RULES), Response)  # as written: 403
    decision = run(post(read(uri)), "read", mcp_operations=ENCODED_RULES)
    assert not isinstance(decision, LetThrough), f"{uri} read with `read` only; {listed} needs `admin`"
    assert decision.status == 403
