"""Behaviour §3 and §4 end to end: metadata, challenges and refusals, through real Kong semantics.

Every test here goes through the stand-in and the real plugin server process; none of these
requests may reach the upstream MCP server.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.harness.kong_standin import KongStandIn
from tests.harness.stack import MCP_REQUEST, MISSING_TOKEN, StartKong, assert_refused, declarative, plugin_config
from tests.harness.upstream import EchoUpstream

PRM_SUFFIX = "/mcp/.well-known/oauth-protected-resource"
PRM_INSERTED = "/.well-known/oauth-protected-resource/mcp"
DOCUMENT = {
    "resource": "http://localhost:8000/mcp",
    "authorization_servers": ["http://localhost:9090"],
    "scopes_supported": ["mcp:tools"],
    "bearer_methods_supported": ["header"],
}


def calls(kong: KongStandIn) -> list[str]:
    return [call.method for call in kong.last.pdk_calls]


@pytest.mark.parametrize("path", [PRM_SUFFIX, PRM_INSERTED])
def test_metadata_is_served_on_both_paths_from_kong_yaml(
    kong: KongStandIn, http: requests.Session, upstream: EchoUpstream, path: str
) -> None:
    before = len(upstream.requests)
    response = http.get(kong.proxy_url + path)
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert kong.last.proxied is False and len(upstream.requests) == before
    assert calls(kong) == [
        "kong.request.get_headers",
        "kong.request.get_path",
        "kong.request.get_method",
        "kong.response.exit",
    ]
    assert kong.last.round_trips == 3


def test_metadata_head_has_headers_and_no_body(kong: KongStandIn, http: requests.Session) -> None:
    response = http.head(kong.proxy_url + PRM_INSERTED)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(json.dumps(DOCUMENT, separators=(",", ":")))


def test_metadata_path_with_trailing_slash_is_not_a_second_document(kong: KongStandIn, http: requests.Session) -> None:
    response = http.get(kong.proxy_url + PRM_SUFFIX + "/")
    assert_refused(response, 401, MISSING_TOKEN, kong=kong)  # a protected path like any other
    assert kong.last.round_trips <= 5


def test_metadata_path_is_matched_after_kongs_normalisation(kong: KongStandIn, http: requests.Session) -> None:
    response = http.get(kong.proxy_url + "/mcp/./.well-known//oauth-protected-resource")
    assert response.status_code == 200 and response.json() == DOCUMENT


def test_missing_token_gets_the_bare_challenge_and_kongs_documented_body(
    kong: KongStandIn, http: requests.Session, upstream: EchoUpstream
) -> None:
    before = len(upstream.requests)
    response = http.post(kong.proxy_url + "/mcp", json=MCP_REQUEST)
    assert_refused(response, 401, MISSING_TOKEN, kong=kong, upstream=upstream, before=before)
    port = kong.proxy_url.rsplit(":", 1)[1]
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer resource_metadata="http://127.0.0.1:{port}{PRM_SUFFIX}", scope="mcp:tools"'
    )
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": "unauthorized", "error_description": "Missing access token"}
    assert kong.last.proxied is False and len(upstream.requests) == before
    assert kong.last.round_trips <= 5


def test_non_bearer_credentials_get_the_bare_challenge(kong: KongStandIn, http: requests.Session) -> None:
    response = http.post(kong.proxy_url + "/mcp", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_refused(response, 401, MISSING_TOKEN, kong=kong)
    assert "error=" not in response.headers["WWW-Authenticate"]
    assert kong.last.round_trips <= 5


def test_resource_metadata_url_uses_x_forwarded_headers_only_from_trusted_proxies(
    start_kong: StartKong, http: requests.Session
) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Port": "443"}
    trusted = start_kong(declarative(), trusted_ips=["127.0.0.1/32"])
    response = http.post(trusted.proxy_url + "/mcp", headers=forwarded)
    assert response.headers["WWW-Authenticate"] == (f'Bearer resource_metadata="https://mcp.example.com{PRM_SUFFIX}"')
    untrusted = start_kong(declarative())
    response = http.post(untrusted.proxy_url + "/mcp", headers=forwarded)
    port = untrusted.proxy_url.rsplit(":", 1)[1]
    assert response.headers["WWW-Authenticate"] == (f'Bearer resource_metadata="http://127.0.0.1:{port}{PRM_SUFFIX}"')


def test_metadata_endpoint_setting_is_served_and_named_in_the_challenge(
    start_kong: StartKong, http: requests.Session
) -> None:
    kong = start_kong(declarative(plugin_config(metadata_endpoint=PRM_INSERTED)))
    assert http.get(kong.proxy_url + PRM_INSERTED).status_code == 200
    assert_refused(http.get(kong.proxy_url + PRM_SUFFIX), 401, MISSING_TOKEN, kong=kong)  # not the metadata path here
    challenge = http.get(kong.proxy_url + "/mcp").headers["WWW-Authenticate"]
    assert challenge.endswith(f'{PRM_INSERTED}"')


def test_resource_without_path_serves_the_root_document(start_kong: StartKong, http: requests.Session) -> None:
    kong = start_kong(declarative(plugin_config(resource="http://localhost:8000"), paths=["/"]))
    response = http.get(kong.proxy_url + "/.well-known/oauth-protected-resource")
    assert response.status_code == 200 and response.json()["resource"] == "http://localhost:8000"
    challenge = http.post(kong.proxy_url + "/").headers["WWW-Authenticate"]
    assert challenge.endswith('/.well-known/oauth-protected-resource"')


@pytest.mark.parametrize(
    "authorization,description",
    [
        (["Bearer"], "The Bearer token is empty"),
        (["Bearer a b"], "The Bearer token is not well-formed"),
        (["Bearer a", "Bearer b"], "Only one Authorization header is allowed"),
    ],
)
def test_malformed_authorization_is_a_400_with_invalid_request(
    kong: KongStandIn, upstream: EchoUpstream, authorization: list[str], description: str
) -> None:
    before = len(upstream.requests)
    status, headers, body = kong_raw_request(kong, authorization)
    assert status == 400 and kong.last.proxied is False
    assert kong.last.round_trips <= 5
    assert headers["www-authenticate"].startswith(
        f'Bearer error="invalid_request", error_description="{description}", resource_metadata="http://'
    )
    assert json.loads(body) == {"error": "invalid_request", "error_description": description}
    assert len(upstream.requests) == before


def kong_raw_request(kong: KongStandIn, authorization: list[str]) -> tuple[int, dict[str, str], bytes]:
    """A request with repeated Authorization headers, which requests cannot send."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(kong.proxy_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.putrequest("POST", "/mcp")
        for value in authorization:
            connection.putheader("Authorization", value)
        connection.putheader("Content-Length", "0")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_oversized_body_is_413_before_any_token_work(
    start_kong: StartKong, http: requests.Session, upstream: EchoUpstream
) -> None:
    kong = start_kong(declarative(plugin_config(max_request_body_size=64)))
    before = len(upstream.requests)
    response = http.post(kong.proxy_url + "/mcp", data=b"x" * 65, headers={"Authorization": "Bearer abc"})
    assert_refused(response, 413, "The request body is larger than this resource accepts", kong=kong)
    assert calls(kong) == ["kong.request.get_headers", "kong.request.get_path", "kong.response.exit"]
    assert_refused(
        http.post(kong.proxy_url + "/mcp", data=b"x" * 64), 401, MISSING_TOKEN
    )  # at the limit: on to the token
    assert len(upstream.requests) == before


def test_any_token_is_refused_401_invalid_token_and_never_proxied(
    kong: KongStandIn, http: requests.Session, upstream: EchoUpstream
) -> None:
    before = len(upstream.requests)
    response = http.post(kong.proxy_url + "/mcp", headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."})
    description = "The access token is signed with an algorithm this resource does not accept"  # alg "none"
    assert_refused(response, 401, description, kong=kong, upstream=upstream, before=before)
    assert 'resource_metadata="http://127.0.0.1:' in response.headers["WWW-Authenticate"]
    assert kong.last.round_trips <= 5


#: What an arbitrary Authorization value can be refused for, with no authorization server reachable.
RANDOM_REFUSALS = {
    MISSING_TOKEN,
    "The Bearer token is empty",
    "The Bearer token is not well-formed",
    "The access token is not a JWT",
    "The access token is malformed",
}


def test_random_authorization_values_never_reach_the_upstream(
    kong: KongStandIn, http: requests.Session, upstream: EchoUpstream
) -> None:
    import random
    import string

    rng = random.Random(20261201)
    alphabet = string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "").replace("\x0c", "")
    before = len(upstream.requests)
    statuses = set()
    for _ in range(60):
        scheme = rng.choice(["Bearer ", "bearer ", "Basic ", "", "Bearer  ", "DPoP "])
        value = scheme + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        response = http.post(kong.proxy_url + "/mcp", headers={"Authorization": value.strip() or "x"})
        statuses.add(response.status_code)
        assert response.status_code in (400, 401), value
        assert response.json()["error_description"] in RANDOM_REFUSALS, (value, response.text)
    assert len(upstream.requests) == before
    assert statuses == {400, 401}
