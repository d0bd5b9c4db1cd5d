"""Behaviour §12 end to end: scopes per route and per MCP operation, through the Kong stand-in and
the real plugin server, with tokens of the mock authorization server; the round trips each path
costs (§12.5, §11.1) counted on the PDK calls the stand-in recorded.
"""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.harness.kong_standin import KongStandIn
from tests.harness.kong_standin.settings import BODY_BUFFER_ENV
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.stack import (
    MISSING_TOKEN,
    StartKong,
    assert_refused,
    call,
    declarative,
    plugin_config,
    plugin_env,
)
from tests.harness.upstream import EchoUpstream

V = "2026-07-28"  # the MCP version whose requests carry Mcp-Method / Mcp-Name
OPERATIONS = [
    {"method": "tools/call", "scopes_required": ["mcp:tools"]},
    {"method": "tools/call", "name": "delete_repo", "scopes_required": ["repo:admin repo:write", "root"]},
    {"method": "resources/read", "name": "file:///secret/*", "scopes_required": ["secrets"]},
]
ROUTE = ["mcp:base", "legacy"]  # the route's scopes_required: mcp:base, or legacy
SCOPED: dict[str, Any] = {"scopes_required": ROUTE, "mcp_operations": OPERATIONS}
ALL = "mcp:base mcp:tools repo:admin repo:write secrets"
RAW_BODY = "kong.request.get_raw_body"
INSUFFICIENT = "The access token does not grant the scopes this operation needs"
PRM = "/.well-known/oauth-protected-resource/mcp"


def scoped_kong(start_kong: StartKong, authz: MockAuthorizationServer, **config: Any) -> KongStandIn:
    return start_kong(declarative(plugin_config(authorization_servers=[authz.issuer], **config)))


# ------------------------------------------------------------------------------------------ requests
def rpc(method: str = "tools/call", name: str | None = None, request_id: Any = 1, **params: Any) -> dict[str, Any]:
    """A JSON-RPC request; ``name`` goes to ``params.uri`` for resources/read, else ``params.name``."""
    if name is not None:
        params["uri" if method == "resources/read" else "name"] = name
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def routing(method: str = "tools/call", name: str | None = None, version: str = V) -> dict[str, str]:
    """The routing headers of an MCP 2026-07-28 request."""
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    return headers if name is None else {**headers, "Mcp-Name": name}


def encoded(name: str) -> str:
    """``Mcp-Name`` in the base64 form of the 2026-07-28 transport."""
    return "=?base64?" + base64.b64encode(name.encode()).decode() + "?="


def post(
    kong: KongStandIn,
    http: requests.Session,
    body: Any,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """A POST of ``body`` (bytes as they are, anything else as JSON) to the MCP endpoint."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return http.post(kong.proxy_url + "/mcp", data=data, headers=sent, timeout=30)


def raw_post(kong: KongStandIn, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
    """A POST with repeated headers, which requests cannot send."""
    url = urlsplit(kong.proxy_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.putrequest("POST", "/mcp")
        for name, value in [*headers, ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def calls(kong: KongStandIn) -> list[str]:
    return [c.method for c in kong.last.pdk_calls]


def metadata_url(kong: KongStandIn) -> str:
    """The ``resource_metadata`` a challenge names (the first metadata path)."""
    return f"http://127.0.0.1:{kong.port}/mcp/.well-known/oauth-protected-resource"


# ---------------------------------------------------------------------------------------- assertions
def proxied(kong: KongStandIn, response: requests.Response, upstream: EchoUpstream, before: int) -> None:
    assert response.status_code == 200, f"{response.status_code} {response.headers} {response.text}"
    assert kong.last.proxied is True and len(upstream.requests) == before + 1


def step_up(kong: KongStandIn, response: requests.Response, upstream: EchoUpstream, before: int, scope: str) -> None:
    """The 403 of MCP 2026-07-28's step-up naming ``scope``, exactly; never proxied."""
    assert response.status_code == 403, f"{response.status_code} {response.headers} {response.text}"
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer error="insufficient_scope", error_description="{INSUFFICIENT}", '
        f'resource_metadata="{metadata_url(kong)}", scope="{scope}"'
    )
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {"error": "insufficient_scope", "error_description": INSUFFICIENT}
    assert kong.last.proxied is False and len(upstream.requests) == before


def jsonrpc_refused(
    kong: KongStandIn,
    status: int,
    body: bytes,
    upstream: EchoUpstream,
    before: int,
    code: int,
    request_id: Any = None,
    headers: Any = None,
) -> None:
    """A 400 whose body is a JSON-RPC error with ``code`` and ``request_id``, no challenge; never proxied."""
    assert status == 400, body
    answer = json.loads(body)
    assert set(answer) == {"jsonrpc", "id", "error"} and answer["jsonrpc"] == "2.0", answer
    assert answer["id"] == request_id and answer["error"]["code"] == code, answer
    if headers is not None:
        assert "WWW-Authenticate" not in headers and headers["Cache-Control"] == "no-store"
    assert kong.last.proxied is False and len(upstream.requests) == before


# -------------------------------------------------------------------------------------- round trips
def test_a_permitted_tool_call_with_trusted_headers_costs_what_it_costs_without_any_scope_field(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    plain = scoped_kong(start_kong, authz)
    trusted = scoped_kong(start_kong, authz, mcp_trust_routing_headers=True, **SCOPED)
    token = authz.mint({"scope": "mcp:base mcp:tools"})
    for kong in (plain, trusted):
        before = len(upstream.requests)
        proxied(kong, post(kong, http, rpc(name="read_file"), token, routing(name="read_file")), upstream, before)
    assert calls(trusted) == calls(plain) and RAW_BODY not in calls(trusted)
    assert trusted.last.round_trips == plain.last.round_trips == 5


def test_a_tool_call_classified_from_its_body_costs_exactly_one_more_round_trip(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    plain = scoped_kong(start_kong, authz)
    scoped = scoped_kong(start_kong, authz, **SCOPED)
    token = authz.mint({"scope": "mcp:base mcp:tools"})
    for headers in ({}, routing(name="read_file")):  # untrusted headers: the body is read too
        for kong in (plain, scoped):
            before = len(upstream.requests)
            proxied(kong, post(kong, http, rpc(name="read_file"), token, headers), upstream, before)
        assert calls(scoped) == calls(plain)[:2] + [RAW_BODY] + calls(plain)[2:]
        assert scoped.last.round_trips == plain.last.round_trips + 1 == 6
        raw_body = scoped.last.pdk_calls[2]
        assert raw_body.args == [1048576]  # Kong may read a file-buffered body up to max_request_body_size


def test_a_route_with_only_scopes_required_costs_what_it_costs_without(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    plain = scoped_kong(start_kong, authz)
    route = scoped_kong(
        start_kong, authz, scopes_required=ROUTE, scope_hierarchy=[{"scope": "all", "implies": ["mcp:base"]}]
    )
    token = authz.mint({"scope": "all"})
    for kong in (plain, route):
        before = len(upstream.requests)
        proxied(kong, post(kong, http, rpc(name="delete_repo"), token), upstream, before)
    assert calls(route) == calls(plain) and route.last.round_trips == 5


def test_every_refusal_without_mcp_operations_stays_within_five_round_trips(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(
        start_kong,
        authz,
        scopes_required=["mcp:base mcp:tools"],
        scope_hierarchy=[{"scope": "all", "implies": ["mcp:base"]}],
        scopes_supported=["mcp:tools", "offline_access"],
        mcp_trust_routing_headers=True,
        max_request_body_size=4096,
    )
    before = len(upstream.requests)
    narrow = authz.mint({"scope": "all"})
    refusals = [
        post(kong, http, rpc(name="delete_repo"), None, routing(name="delete_repo")),  # no token, hinted
        post(kong, http, rpc(name="delete_repo")),  # no token
        http.get(kong.proxy_url + "/mcp", timeout=30),  # no token, no body
        post(kong, http, rpc(name="delete_repo"), narrow),  # 403
        post(kong, http, rpc(name="delete_repo"), narrow, routing(name="read_file")),  # 403, lying headers unread
        post(kong, http, b"not json", narrow),  # 403: no body is read without mcp_operations
        post(kong, http, rpc(name="x" * 5000), narrow),  # 413
        post(kong, http, rpc(), "not-a-token"),  # 401 invalid_token
    ]
    statuses = []
    for response, record in zip(refusals, kong.requests[-len(refusals) :], strict=True):
        statuses.append(response.status_code)
        assert record.proxied is False and RAW_BODY not in [c.method for c in record.pdk_calls]
        assert record.round_trips <= 5, [c.method for c in record.pdk_calls]
    assert statuses == [401, 401, 401, 403, 403, 403, 413, 401]
    assert len(upstream.requests) == before


# -------------------------------------------------------------------------------------------- the 403
def test_a_missing_operation_scope_is_the_step_up_403_naming_every_scope_the_operation_needs(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, **SCOPED)
    before = len(upstream.requests)
    token = authz.mint({"scope": "mcp:base mcp:tools"})
    # the route's first alternative plus the operation's first, in one challenge
    step_up(kong, post(kong, http, rpc(name="delete_repo"), token), upstream, before, "mcp:base repo:admin repo:write")
    step_up(
        kong,
        post(kong, http, rpc("resources/read", "file:///secret/key"), token),
        upstream,
        before,
        "mcp:base secrets",
    )
    # half of an alternative is not enough
    half = authz.mint({"scope": "mcp:base repo:admin"})
    step_up(kong, post(kong, http, rpc(name="delete_repo"), half), upstream, before, "mcp:base repo:admin repo:write")
    # the route's scope is needed as well as the operation's
    no_route = authz.mint({"scope": "mcp:tools repo:admin repo:write"})
    step_up(
        kong, post(kong, http, rpc(name="delete_repo"), no_route), upstream, before, "mcp:base repo:admin repo:write"
    )
    # either alternative is enough
    for scopes in ("mcp:base repo:admin repo:write", "legacy root", "mcp:base root"):
        before = len(upstream.requests)
        proxied(kong, post(kong, http, rpc(name="delete_repo"), authz.mint({"scope": scopes})), upstream, before)
    assert json.loads(upstream.last["body"])["params"]["name"] == "delete_repo"
    before = len(upstream.requests)
    proxied(kong, post(kong, http, rpc("resources/read", "file:///public"), token), upstream, before)


# -------------------------------------------------------------------------------------------- the 401
def test_the_401_names_the_scopes_of_the_operation_its_routing_headers_name(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, scopes_supported=["mcp:tools", "offline_access", "repo:admin"], **SCOPED)
    before = len(upstream.requests)

    def challenge(response: requests.Response) -> str:
        assert_refused(response, 401, MISSING_TOKEN, kong=kong, upstream=upstream, before=before)
        assert RAW_BODY not in calls(kong)  # no body is read for a request without a token
        return str(response.headers["WWW-Authenticate"])

    bare = f'Bearer resource_metadata="{metadata_url(kong)}", scope='
    hinted = post(kong, http, rpc(name="read_file"), None, routing(name="delete_repo"))  # a hint: the body is not read
    assert challenge(hinted) == bare + '"mcp:base repo:admin repo:write"'
    untrusted_version = post(kong, http, rpc(name="read_file"), None, routing(name="read_file", version="2025-11-25"))
    assert challenge(untrusted_version) == bare + '"mcp:base mcp:tools"'
    assert challenge(post(kong, http, rpc(name="delete_repo"))) == bare + '"mcp:tools repo:admin"'  # scopes_supported
    assert challenge(http.get(kong.proxy_url + "/mcp", timeout=30)) == bare + '"mcp:base"'  # no body: the route's
    assert challenge(call(kong, http=http)) == bare + '"mcp:tools repo:admin"'
    assert "offline_access" not in http.get(kong.proxy_url + PRM, timeout=30).json()["scopes_supported"]


def test_offline_access_is_never_advertised_even_by_a_kong_config_listing_it(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, scopes_supported=["openid", "offline_access", "mcp:tools"])
    document = http.get(kong.proxy_url + PRM, timeout=30).json()
    assert document["scopes_supported"] == ["openid", "mcp:tools"]
    response = call(kong, http=http)
    assert_refused(response, 401, MISSING_TOKEN, kong=kong)
    assert (
        response.headers["WWW-Authenticate"]
        == f'Bearer resource_metadata="{metadata_url(kong)}", scope="openid mcp:tools"'
    )
    assert any("offline_access" in line for line in kong.server_output), kong.server_output  # the warning at start
    required = scoped_kong(
        start_kong, authz, scopes_supported=["offline_access"], scopes_required=["offline_access mcp:tools"]
    )
    before = len(upstream.requests)
    denied = post(required, http, rpc(), authz.mint({"scope": "mcp:tools"}))
    step_up(required, denied, upstream, before, "mcp:tools")
    assert "offline_access" not in http.get(required.proxy_url + PRM, timeout=30).json().get("scopes_supported", [])


# ---------------------------------------------------------------------------- classifying requests
def test_routing_headers_that_lie_about_the_body_are_a_400_jsonrpc_error_never_proxied(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, **SCOPED)
    trusting = scoped_kong(start_kong, authz, mcp_trust_routing_headers=True, **SCOPED)
    before = len(upstream.requests)
    token = authz.mint({"scope": ALL})  # holds every scope: only the mismatch refuses
    lies = [
        (kong, rpc(name="delete_repo", request_id=7), routing(name="read_file")),  # the name lies
        (kong, rpc(name="delete_repo", request_id=7), routing("tools/list")),  # the method lies
        (kong, rpc(name="delete_repo", request_id=7), routing(name="Delete_repo")),  # a case difference
        (kong, rpc(name="delete_repo", request_id=7), routing()),  # 2026-07-28 without the Mcp-Name it needs
        (kong, rpc(name="delete_repo", request_id=7), {"MCP-Protocol-Version": V}),  # without Mcp-Method
        (kong, rpc(name="delete_repo", request_id=7), routing(name=encoded("read_file"))),  # an encoded lie
        # trusted headers of an older version are not trusted: the body is read and disagrees
        (trusting, rpc(name="delete_repo", request_id=7), routing(name="read_file", version="2025-11-25")),
    ]
    for target, body, headers in lies:
        response = post(target, http, body, token, headers)
        jsonrpc_refused(target, response.status_code, response.content, upstream, before, -32020, 7, response.headers)
        assert response.json()["error"]["message"].startswith("Header mismatch: "), response.text
    notification = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_repo"}}
    response = post(kong, http, notification, token, routing(name="read_file"))
    jsonrpc_refused(kong, response.status_code, response.content, upstream, before, -32020, None, response.headers)
    batch = [rpc(name="read_file"), rpc(name="delete_repo", request_id=2)]  # a batch cannot be mirrored
    response = post(kong, http, batch, token, routing(name="read_file"))
    jsonrpc_refused(kong, response.status_code, response.content, upstream, before, -32020, None, response.headers)
    # headers that agree pass, in plain or base64 form
    for name in ("delete_repo", encoded("delete_repo")):
        before = len(upstream.requests)
        proxied(kong, post(kong, http, rpc(name="delete_repo"), token, routing(name=name)), upstream, before)


def test_a_duplicated_routing_header_is_a_400_never_a_bypass(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    body = json.dumps(rpc(name="delete_repo", request_id=3)).encode()
    token = authz.mint({"scope": "mcp:base mcp:tools"})  # may call read_file, not delete_repo
    for config in ({}, {"mcp_trust_routing_headers": True}):
        kong = scoped_kong(start_kong, authz, **config, **SCOPED)
        before = len(upstream.requests)
        for duplicated in (
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "read_file"), ("Mcp-Name", "delete_repo")],
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "delete_repo"), ("Mcp-Name", "read_file")],
            [("Mcp-Method", "tools/list"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "read_file")],
        ):
            sent = [("Authorization", f"Bearer {token}"), ("MCP-Protocol-Version", V), *duplicated]
            status, headers, answer = raw_post(kong, body, sent)
            assert status == 400, (config, duplicated, status, answer)
            assert json.loads(answer)["error"]["code"] == -32020 and kong.last.proxied is False
            assert len(upstream.requests) == before


def test_a_base64_encoded_name_is_decoded_before_it_is_matched(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, mcp_trust_routing_headers=True, **SCOPED)
    before = len(upstream.requests)
    token = authz.mint({"scope": "mcp:base mcp:tools"})
    response = post(kong, http, rpc(name="delete_repo"), token, routing(name=encoded("delete_repo")))
    step_up(kong, response, upstream, before, "mcp:base repo:admin repo:write")
    assert RAW_BODY not in calls(kong)  # classified from the trusted headers
    garbled = post(kong, http, rpc(name="delete_repo"), token, routing(name="=?base64?ZGVsZXRlX3JlcG8?="))
    jsonrpc_refused(kong, garbled.status_code, garbled.content, upstream, before, -32020)  # not canonical base64


def test_a_batch_needs_the_union_of_its_members_scopes(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, **SCOPED)
    before = len(upstream.requests)
    batch = [rpc(name="read_file", request_id=1), rpc(name="delete_repo", request_id=2)]
    step_up(kong, post(kong, http, batch, authz.mint({"scope": "mcp:base mcp:tools"})), upstream, before,
            "mcp:base mcp:tools repo:admin repo:write")  # fmt: skip
    step_up(kong, post(kong, http, batch[::-1], authz.mint({"scope": "mcp:base repo:admin repo:write"})), upstream,
            before, "mcp:base repo:admin repo:write mcp:tools")  # fmt: skip
    proxied(kong, post(kong, http, batch, authz.mint({"scope": "mcp:base mcp:tools root"})), upstream, before)
    assert json.loads(upstream.last["body"]) == batch


@pytest.mark.parametrize(
    "body,code",
    [
        (b"not json", -32700),
        (b"\xff\xfe{}", -32700),
        (b"", -32700),
        (b"[]", -32600),
        (b"42", -32600),
        (b'{"jsonrpc":"2.0","id":1}', -32600),
        (b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}, 1]', -32600),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_repo"}}',
            -32700,
        ),
        (  # a duplicated name: which one would the upstream take?
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"delete_repo"}}',
            -32700,
        ),
    ],
)
def test_a_body_that_is_not_json_rpc_is_a_400_never_proxied(
    start_kong: StartKong,
    authz: MockAuthorizationServer,
    http: requests.Session,
    upstream: EchoUpstream,
    body: bytes,
    code: int,
) -> None:
    kong = scoped_kong(start_kong, authz, **SCOPED)
    before = len(upstream.requests)
    headers = {"Content-Length": "0"} if not body else None
    response = post(kong, http, body, authz.mint({"scope": ALL}), headers)
    if not body:  # no body at all names no operation: the route's scopes only
        proxied(kong, response, upstream, before)
        return
    jsonrpc_refused(kong, response.status_code, response.content, upstream, before, code, None, response.headers)
    assert RAW_BODY in calls(kong)


def test_a_jsonrpc_response_posted_by_the_client_needs_only_the_routes_scopes(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, **SCOPED)
    answer = {"jsonrpc": "2.0", "id": 5, "result": {"roots": []}}
    before = len(upstream.requests)
    proxied(kong, post(kong, http, answer, authz.mint({"scope": "mcp:base"})), upstream, before)
    step_up(kong, post(kong, http, answer, authz.mint({"scope": "mcp:tools"})), upstream, before + 1, "mcp:base")
    error = {"jsonrpc": "2.0", "id": 5, "error": {"code": -1, "message": "declined"}}
    proxied(kong, post(kong, http, error, authz.mint({"scope": "legacy"})), upstream, before + 1)


# ----------------------------------------------------------------------------------- Kong's buffer
def buffered_kong(start_kong: StartKong, authz: MockAuthorizationServer, tmp_path: Path, **config: Any) -> KongStandIn:
    """A stand-in with Kong's default client body buffer (8k) instead of the image's 1m."""
    prefix = tmp_path / f"buffer{len(list(tmp_path.glob('buffer*')))}"
    prefix.mkdir()
    env = plugin_env(prefix) | {BODY_BUFFER_ENV: "8k"}
    kong = start_kong(declarative(plugin_config(authorization_servers=[authz.issuer], **config)), env=env)
    assert kong.client_body_buffer_size == 8192
    return kong


def padded(name: str, size: int) -> bytes:
    """A tools/call of ``name`` of ``size`` bytes, padded in ``params.arguments``."""
    body = rpc(name=name, arguments={"pad": ""})
    pad = size - len(json.dumps(body))
    body["params"]["arguments"]["pad"] = "x" * pad
    data = json.dumps(body).encode()
    assert len(data) == size
    return data


def test_a_body_past_kongs_buffer_within_the_limit_is_still_classified(
    start_kong: StartKong,
    authz: MockAuthorizationServer,
    tmp_path: Path,
    http: requests.Session,
    upstream: EchoUpstream,
) -> None:
    kong = buffered_kong(start_kong, authz, tmp_path, **SCOPED)
    before = len(upstream.requests)
    token = authz.mint({"scope": "mcp:base mcp:tools"})
    step_up(
        kong, post(kong, http, padded("delete_repo", 20_000), token), upstream, before, "mcp:base repo:admin repo:write"
    )
    assert kong.last.pdk_calls[2].method == RAW_BODY and kong.last.pdk_calls[2].args == [1048576]
    body = padded("read_file", 20_000)
    proxied(kong, post(kong, http, body, token), upstream, before)
    assert upstream.last["body"].encode() == body


def test_a_body_over_max_request_body_size_is_a_413_before_any_read(
    start_kong: StartKong,
    authz: MockAuthorizationServer,
    tmp_path: Path,
    http: requests.Session,
    upstream: EchoUpstream,
) -> None:
    kong = buffered_kong(start_kong, authz, tmp_path, max_request_body_size=16_384, **SCOPED)
    before = len(upstream.requests)
    response = post(kong, http, padded("read_file", 20_000), authz.mint({"scope": ALL}))
    assert_refused(
        response,
        413,
        "The request body is larger than this resource accepts",
        kong=kong,
        upstream=upstream,
        before=before,
    )
    assert calls(kong) == ["kong.request.get_headers", "kong.request.get_path", "kong.response.exit"]


def test_without_a_size_limit_a_body_past_kongs_buffer_is_never_proxied(
    start_kong: StartKong,
    authz: MockAuthorizationServer,
    tmp_path: Path,
    http: requests.Session,
    upstream: EchoUpstream,
) -> None:
    kong = buffered_kong(start_kong, authz, tmp_path, max_request_body_size=0, **SCOPED)
    before = len(upstream.requests)
    token = authz.mint({"scope": ALL})
    response = post(kong, http, padded("read_file", 20_000), token)
    assert response.status_code == 500, response.text  # Kong's own: get_raw_body cannot return the body
    assert kong.last.proxied is False and len(upstream.requests) == before
    assert calls(kong)[-1] == RAW_BODY and kong.last.pdk_calls[-1].args == []
    proxied(kong, post(kong, http, padded("read_file", 8_000), token), upstream, before)  # within the buffer


# ------------------------------------------------------------------------------------ granted scopes
def test_scopes_from_an_introspection_answer(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(
        start_kong,
        authz,
        introspection_endpoint=authz.introspection_endpoint,
        client_id="kong",
        client_secret="kong-secret",
        **SCOPED,
    )
    before = len(upstream.requests)
    narrow = authz.issue_opaque({"scope": "mcp:base mcp:tools"})
    step_up(kong, post(kong, http, rpc(name="delete_repo"), narrow), upstream, before, "mcp:base repo:admin repo:write")
    proxied(kong, post(kong, http, rpc(name="read_file"), narrow), upstream, before)
    wide = authz.issue_opaque({"scope": "mcp:base repo:admin repo:write"})
    proxied(kong, post(kong, http, rpc(name="delete_repo"), wide), upstream, before + 1)
    assert authz.count("introspection") == 2


def test_scopes_from_an_scp_array_of_a_jwt(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, **SCOPED)
    before = len(upstream.requests)
    narrow = authz.mint({"scope": None, "scp": ["mcp:base", "mcp:tools"]})
    step_up(kong, post(kong, http, rpc(name="delete_repo"), narrow), upstream, before, "mcp:base repo:admin repo:write")
    proxied(kong, post(kong, http, rpc(name="read_file"), narrow), upstream, before)
    wide = authz.mint({"scope": None, "scp": ["mcp:base", "repo:admin", "repo:write"]})
    proxied(kong, post(kong, http, rpc(name="delete_repo"), wide), upstream, before + 1)
    # never merged: a scope claim hides scp
    both = authz.mint({"scope": "mcp:base", "scp": ["repo:admin", "repo:write"]})
    step_up(
        kong, post(kong, http, rpc(name="delete_repo"), both), upstream, before + 2, "mcp:base repo:admin repo:write"
    )


def test_the_scope_hierarchy_grants_implied_scopes_never_the_reverse(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    hierarchy = [
        {"scope": "admin", "implies": ["repo", "mcp:base"]},
        {"scope": "repo", "implies": ["repo:admin", "repo:write", "mcp:tools"]},
    ]
    kong = scoped_kong(start_kong, authz, scope_hierarchy=hierarchy, **SCOPED)
    before = len(upstream.requests)
    proxied(kong, post(kong, http, rpc(name="delete_repo"), authz.mint({"scope": "admin"})), upstream, before)
    proxied(
        kong, post(kong, http, rpc(name="delete_repo"), authz.mint({"scope": "mcp:base repo"})), upstream, before + 1
    )
    implied = authz.mint({"scope": "repo:admin repo:write mcp:tools"})  # what repo implies is not repo
    gated = scoped_kong(start_kong, authz, scope_hierarchy=hierarchy, scopes_required=["repo"])
    step_up(gated, post(gated, http, rpc(), implied), upstream, before + 2, "repo")


# ------------------------------------------------------------------------------- Kong 3.14 configs
def test_a_config_without_the_new_fields_behaves_as_before(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = scoped_kong(start_kong, authz, scopes_supported=["mcp:tools"])
    for scopes in ("nothing", "", None):
        token = authz.mint({"scope": scopes})
        for headers in ({}, routing(name="delete_repo"), routing(name="read_file")):
            before = len(upstream.requests)
            proxied(kong, post(kong, http, rpc(name="delete_repo"), token, headers), upstream, before)
            assert calls(kong) == [
                "kong.request.get_headers",
                "kong.request.get_path",
                "kong.service.request.set_headers",
                "kong.service.request.clear_header",
                "kong.client.authenticate",
            ]
    response = post(kong, http, b"not json", authz.mint({"scope": "nothing"}))
    assert response.status_code == 200 and kong.last.proxied is True
    hinted = post(kong, http, rpc(name="delete_repo"), None, routing(name="delete_repo"))
    assert hinted.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{metadata_url(kong)}", scope="mcp:tools"'
