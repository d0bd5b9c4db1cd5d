"""Behaviour §12 in the gateway: which operation, what it needs, the 403 and the 401 hint, the round trips."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.errors import Response
from kong_plugins.ai_mcp_oauth2.gateway import Gateway, LetThrough

from .conftest import kong_config
from .test_gateway import Claims, FakeRequest

OPERATIONS = [
    {"method": "tools/call", "scopes_required": ["tools"]},
    {"method": "tools/call", "name": "delete_repo", "scopes_required": ["repo:admin"]},
]
V = "2026-07-28"


def call(name: str, request_id: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name}}).encode()


def post(
    body: bytes | None, headers: dict[str, list[str]] | None = None, token: bool = True, length: bool = True
) -> FakeRequest:
    sent = dict(headers or {})
    if token:
        sent["authorization"] = ["Bearer t"]
    if length and body is not None:
        sent["content-length"] = [str(len(body))]
    return FakeRequest(sent, body=body)


def run(request: FakeRequest, scopes: str, **config: Any) -> Response | LetThrough:
    gateway = Gateway(kong_config(**config), services=lambda _: (Claims({"sub": "u", "scope": scopes}), None))
    return gateway.handle(request)


def refused(decision: Response | LetThrough) -> tuple[int, dict[str, Any], str | None]:
    assert isinstance(decision, Response)
    return decision.status, json.loads(decision.body), decision.headers.get("WWW-Authenticate")


def test_a_permitted_tool_call_read_from_the_body_costs_one_round_trip() -> None:
    request = post(call("read_file"))
    assert isinstance(run(request, "tools", mcp_operations=OPERATIONS), LetThrough)
    assert request.calls == ["headers", "path", "raw_body"]
    assert request.file_limits == [1048576]  # Kong may read a file-buffered body up to the limit


def test_a_tool_call_without_its_scope_is_a_403_naming_every_needed_scope() -> None:
    request = post(call("delete_repo"))
    status, error, challenge = refused(run(request, "tools", scopes_required=["mcp"], mcp_operations=OPERATIONS))
    assert status == 403
    assert error == {
        "error": "insufficient_scope",
        "error_description": "The access token does not grant the scopes this operation needs",
    }
    assert challenge is not None and challenge.startswith('Bearer error="insufficient_scope", error_description="')
    assert challenge.endswith(', scope="mcp repo:admin"')
    assert 'resource_metadata="https://gw.example.com/mcp/.well-known/oauth-protected-resource"' in challenge


def test_trusted_routing_headers_classify_at_no_round_trip() -> None:
    headers = {"mcp-protocol-version": [V], "mcp-method": ["tools/call"], "mcp-name": ["read_file"]}
    request = post(call("read_file"), headers)
    assert isinstance(run(request, "tools", mcp_operations=OPERATIONS, mcp_trust_routing_headers=True), LetThrough)
    assert request.calls == ["headers", "path"]
    denied = post(call("read_file"), {**headers, "mcp-name": ["delete_repo"]})
    status, _, challenge = refused(run(denied, "tools", mcp_operations=OPERATIONS, mcp_trust_routing_headers=True))
    assert status == 403 and challenge is not None and 'scope="repo:admin"' in challenge
    assert "raw_body" not in denied.calls


def test_untrusted_routing_headers_are_checked_against_the_body() -> None:
    headers = {"mcp-protocol-version": [V], "mcp-method": ["tools/call"], "mcp-name": ["read_file"]}
    request = post(call("delete_repo", 9), headers)  # headers lie: the body deletes
    decision = run(request, "tools repo:admin", mcp_operations=OPERATIONS)
    assert isinstance(decision, Response) and decision.status == 400
    assert json.loads(decision.body)["error"]["code"] == -32020 and json.loads(decision.body)["id"] == 9
    assert "WWW-Authenticate" not in decision.headers


def test_trusting_headers_of_an_older_protocol_version_still_reads_the_body() -> None:
    headers = {"mcp-protocol-version": ["2025-11-25"], "mcp-method": ["tools/call"], "mcp-name": ["read_file"]}
    request = post(call("delete_repo"), headers)
    status, _, _ = refused(run(request, "tools", mcp_operations=OPERATIONS, mcp_trust_routing_headers=True))
    assert status == 400  # read from the body, which disagrees with the headers
    assert "raw_body" in request.calls


def test_a_duplicated_routing_header_is_a_400_never_a_bypass() -> None:
    headers = {"mcp-protocol-version": [V], "mcp-method": ["tools/call"], "mcp-name": ["read_file", "delete_repo"]}
    request = post(call("delete_repo"), headers)
    status, _, _ = refused(run(request, "tools", mcp_operations=OPERATIONS, mcp_trust_routing_headers=True))
    assert status == 400


def test_a_base64_encoded_name_is_decoded_before_matching() -> None:
    encoded = "=?base64?" + base64.b64encode(b"delete_repo").decode() + "?="
    headers = {"mcp-protocol-version": [V], "mcp-method": ["tools/call"], "mcp-name": [encoded]}
    request = post(call("delete_repo"), headers)
    status, _, challenge = refused(run(request, "tools", mcp_operations=OPERATIONS, mcp_trust_routing_headers=True))
    assert status == 403 and challenge is not None and 'scope="repo:admin"' in challenge


@pytest.mark.parametrize(
    "raw,code", [(b"not json", -32700), (b"[]", -32600), (b'{"jsonrpc":"2.0","id":1}', -32600), (b"\xff", -32700)]
)
def test_a_body_that_is_not_json_rpc_is_a_400(raw: bytes, code: int) -> None:
    decision = run(post(raw), "tools repo:admin", mcp_operations=OPERATIONS)
    assert isinstance(decision, Response) and decision.status == 400
    assert json.loads(decision.body)["error"]["code"] == code


def test_a_batch_needs_the_union_of_its_members_scopes() -> None:
    batch = b"[" + call("read_file", 1) + b"," + call("delete_repo", 2) + b"]"
    status, _, challenge = refused(run(post(batch), "tools", mcp_operations=OPERATIONS))
    assert status == 403 and challenge is not None and 'scope="tools repo:admin"' in challenge
    assert isinstance(run(post(batch), "tools repo:admin", mcp_operations=OPERATIONS), LetThrough)


def test_a_body_is_held_to_the_limit_whatever_the_headers_said() -> None:
    big = call("read_file")[:-1] + b"," + b'"pad":"' + b"x" * 2000 + b'"}'
    request = post(big, length=False)
    request._headers["content-length"] = ["10"]  # the header lies about the size
    status, error, _ = refused(run(request, "tools", mcp_operations=OPERATIONS, max_request_body_size=1000))
    assert status == 413 and error["error"] == "request_too_large"


def test_a_body_kong_cannot_hand_over_is_refused_never_proxied() -> None:
    request = post(call("read_file"))
    request._body = None
    status, error, _ = refused(run(request, "tools", mcp_operations=OPERATIONS))
    assert status == 413 and error["error_description"] == "The request body is larger than the gateway can inspect"


def test_a_request_announcing_no_body_needs_only_the_routes_scopes_and_reads_nothing() -> None:
    request = FakeRequest({"authorization": ["Bearer t"], "content-length": ["0"]}, method="DELETE")
    assert isinstance(run(request, "mcp", scopes_required=["mcp"], mcp_operations=OPERATIONS), LetThrough)
    assert "raw_body" not in request.calls and "method" not in request.calls
    status, _, challenge = refused(run(request, "other", scopes_required=["mcp"], mcp_operations=OPERATIONS))
    assert status == 403 and challenge is not None and challenge.endswith('scope="mcp"')


def test_a_request_that_does_not_announce_its_body_is_read_since_http2_need_not() -> None:
    """HTTP/2 and HTTP/3 may carry a body with neither Content-Length nor Transfer-Encoding: deciding
    "no body" from the headers would let a JSON-RPC call through under the route's scopes alone."""
    sneaky = FakeRequest({"authorization": ["Bearer t"]}, body=call("delete_repo"))
    status, _, challenge = refused(run(sneaky, "mcp tools", scopes_required=["mcp"], mcp_operations=OPERATIONS))
    assert status == 403 and challenge is not None and 'scope="mcp repo:admin"' in challenge
    stream = FakeRequest({"authorization": ["Bearer t"]}, method="GET", body=b"")  # an SSE GET: empty body
    assert isinstance(run(stream, "mcp", scopes_required=["mcp"], mcp_operations=OPERATIONS), LetThrough)
    assert stream.calls == ["headers", "path", "raw_body"]


def test_route_scopes_alone_read_no_body_and_cost_no_round_trip() -> None:
    request = post(call("delete_repo"))
    assert isinstance(run(request, "mcp", scopes_required=["mcp"]), LetThrough)
    assert request.calls == ["headers", "path"]


def test_a_posted_json_rpc_response_needs_only_the_routes_scopes() -> None:
    answer = b'{"jsonrpc":"2.0","id":3,"result":{"action":"accept"}}'
    assert isinstance(run(post(answer), "mcp", scopes_required=["mcp"], mcp_operations=OPERATIONS), LetThrough)


# --- the 401 hint --------------------------------------------------------------------------------
def no_token(headers: dict[str, list[str]], body: bytes | None = b"{}", **config: Any) -> str:
    request = post(body, headers, token=False, length=body is not None)
    status, error, challenge = refused(run(request, "", **config))
    assert status == 401 and error["error"] == "unauthorized" and challenge is not None
    assert "raw_body" not in request.calls  # no body is read without a token
    return challenge


def test_a_401_names_what_the_header_named_operation_needs() -> None:
    headers = {"mcp-method": ["tools/call"], "mcp-name": ["delete_repo"]}  # trusted or not: only a hint
    challenge = no_token(headers, scopes_required=["mcp"], mcp_operations=OPERATIONS, scopes_supported=["mcp", "x"])
    assert challenge.endswith('scope="mcp repo:admin"')


def test_a_401_without_routing_headers_names_scopes_supported_or_for_a_bodiless_request_the_routes() -> None:
    config: dict[str, Any] = {"scopes_required": ["mcp"], "mcp_operations": OPERATIONS, "scopes_supported": ["x"]}
    assert no_token({}, **config).endswith('scope="x"')
    assert no_token({"content-length": ["0"]}, body=None, **config).endswith('scope="mcp"')
    assert no_token({}, body=None, **config).endswith('scope="mcp"')  # unannounced: read as bodiless


def test_a_401_with_garbled_routing_headers_falls_back_to_scopes_supported() -> None:
    headers = {"mcp-method": ["tools/call", "tools/list"]}
    assert no_token(headers, mcp_operations=OPERATIONS, scopes_supported=["x"]).endswith('scope="x"')


def test_offline_access_is_never_advertised_in_a_challenge_or_the_metadata() -> None:
    challenge = no_token({}, scopes_supported=["mcp", "offline_access"])
    assert challenge.endswith('scope="mcp"')
    request = FakeRequest({}, path="/mcp/.well-known/oauth-protected-resource", method="GET")
    document = run(request, "", scopes_supported=["mcp", "offline_access"])
    assert isinstance(document, Response)
    assert json.loads(document.body)["scopes_supported"] == ["mcp"]
