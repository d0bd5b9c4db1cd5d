"""Behaviour §1 and §2: a bad config fails closed, instances follow config changes; PDK calls are counted
(behaviour §11.1).
"""

from __future__ import annotations

import pytest
import requests

from tests.harness.kong_standin import KongStandIn
from tests.harness.stack import MISSING_TOKEN, StartKong, assert_refused, declarative, plugin_config
from tests.harness.upstream import EchoUpstream

MISCONFIGURED = {"error": "server_error", "error_description": "The gateway's authorization plugin is misconfigured"}


def test_a_bad_config_answers_500_logs_the_field_and_proxies_nothing(
    start_kong: StartKong, http: requests.Session, upstream: EchoUpstream
) -> None:
    config = plugin_config(
        claim_to_header=[{"claim": "sub", "header": "X-User"}],
        upstream_headers=[{"header": "X-Roles", "path": ["realm_access", "roles"]}],
    )
    kong = start_kong(declarative(config))
    before = len(upstream.requests)
    for path, headers in [
        ("/mcp", {}),
        ("/mcp", {"Authorization": "Bearer abc"}),
        ("/mcp/.well-known/oauth-protected-resource", {}),
    ]:
        response = http.get(kong.proxy_url + path, headers=headers)
        assert response.status_code == 500
        assert response.json() == MISCONFIGURED
        assert "WWW-Authenticate" not in response.headers
        assert kong.last.proxied is False
    assert len(upstream.requests) == before
    errors = [message for level, message in kong.error_log if level == "err"]
    assert any("claim_to_header" in message and "mutually exclusive" in message for message in errors)
    assert any("claim_to_header" in line for line in kong.server_output)


def test_secrets_in_a_bad_config_are_never_logged_or_returned(start_kong: StartKong, http: requests.Session) -> None:
    secret = "do-not-print-this-secret"
    config = plugin_config(
        introspection_endpoint="http://localhost:9090/introspect",
        client_auth="client_secret_post",
        client_secret=secret,
    )
    kong = start_kong(declarative(config))
    response = http.get(kong.proxy_url + "/mcp")
    assert response.status_code == 500 and response.json() == MISCONFIGURED
    assert secret not in response.text
    assert not any(secret in message for _, message in kong.error_log)
    assert not any(secret in line for line in kong.server_output)
    assert any("client_id" in message for _, message in kong.error_log)


def test_a_config_written_for_kongs_plugin_loads_unchanged(start_kong: StartKong, http: requests.Session) -> None:
    """Introspection with a client, passthrough, and an RFC 8693 exchange with a header actor token."""
    config = plugin_config(
        introspection_endpoint="http://localhost:9090/introspect",
        client_id="kong", client_secret="kong-secret", passthrough_credentials=True,
        token_exchange={
            "enabled": True, "token_endpoint": "http://localhost:9090/token", "client_auth": "client_secret_basic",
            "client_id": "exchanger", "client_secret": "exchanger-secret",
            "request": {"actor_token_source": "header", "actor_token_header": "X-Actor-Token", "scopes": ["mcp:read"]},
            "cache": {"enabled": True, "ttl": 3600},
        },
        consumer_claim=["sub"], consumer_by=["username"],
        upstream_headers=[{"header": "X-Roles", "path": ["realm_access", "roles"]}],
    )  # fmt: skip
    kong = start_kong(declarative(config))
    assert http.get(kong.proxy_url + "/mcp/.well-known/oauth-protected-resource").status_code == 200
    assert_refused(http.get(kong.proxy_url + "/mcp"), 401, MISSING_TOKEN, kong=kong)  # running, not misconfigured


def test_a_config_change_starts_a_new_instance_and_closes_the_old(
    start_kong: StartKong, http: requests.Session
) -> None:
    kong = start_kong(declarative())
    assert http.get(kong.proxy_url + "/mcp/.well-known/oauth-protected-resource").json()["authorization_servers"] == [
        "http://localhost:9090"
    ]
    kong.reload(declarative(plugin_config(authorization_servers=["https://issuer.example.com"])))
    response = http.get(kong.proxy_url + "/mcp/.well-known/oauth-protected-resource")
    assert response.json()["authorization_servers"] == ["https://issuer.example.com"]
    instances = kong.plugin_status("ai-mcp-oauth2")["Plugins"]["ai-mcp-oauth2"]["Instances"]
    assert len(instances) == 1
    assert instances[0]["Config"]["authorization_servers"] == ["https://issuer.example.com"]


def test_kong_normalises_the_config_with_defaults_and_nulls(start_kong: StartKong, http: requests.Session) -> None:
    kong = start_kong(declarative())
    http.get(kong.proxy_url + "/mcp")
    config = kong.plugin_status("ai-mcp-oauth2")["Plugins"]["ai-mcp-oauth2"]["Instances"][0]["Config"]
    assert config["max_request_body_size"] == 1048576 and config["token_exchange"] is None
    assert config["introspection_endpoint"] is None and "__seq__" in config


def test_rejected_requests_cost_at_most_five_pdk_round_trips(kong: KongStandIn, http: requests.Session) -> None:
    for headers, description in (
        ({}, MISSING_TOKEN),
        ({"Authorization": "Bearer abc"}, "The access token is not a JWT"),
        ({"Authorization": "Basic abc"}, MISSING_TOKEN),
    ):
        assert_refused(http.post(kong.proxy_url + "/mcp", headers=headers), 401, description, kong=kong)
        assert kong.last.round_trips == 5, [c.method for c in kong.last.pdk_calls]
        assert kong.last.pdk_calls[-1].method == "kong.response.exit"


def test_header_bytes_that_are_not_utf8_never_bypass_authentication(
    kong: KongStandIn, http: requests.Session, upstream: EchoUpstream
) -> None:
    """A stock kong-pdk server dies on such bytes and Kong then proxies (see the stand-in's self-test)."""
    before = len(upstream.requests)
    no_token = http.post(kong.proxy_url + "/mcp", headers={"X-Pad": "\xff\xfe"})
    assert_refused(no_token, 401, MISSING_TOKEN, kong=kong)
    assert not kong.last.failures
    odd_token = http.post(kong.proxy_url + "/mcp", headers={"Authorization": "Bearer ab\xffcd"})
    assert_refused(odd_token, 400, "The Bearer token is not well-formed", kong=kong)
    assert kong.last.round_trips <= 5 and not kong.last.failures
    assert_refused(http.post(kong.proxy_url + "/mcp"), 401, MISSING_TOKEN, kong=kong)  # the server is still serving
    assert len(upstream.requests) == before


def test_outbound_work_ends_before_kong_gives_up_and_proxies(
    start_kong: StartKong, http: requests.Session, upstream: EchoUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kong proxies when the plugin server answers after its read timeout (60 s; 6 s here). A hung
    authorization server with an issuer path costs 3 discovery URLs x 3 tries x `timeout` (9 s here):
    the request budget (3 s here, 45 s by default) must turn that into a 503 in time."""
    from tests.harness.mock_as import MockAuthorizationServer

    monkeypatch.setenv("AI_MCP_OAUTH2_SERVER_FLAGS", "--request-budget 3")
    with MockAuthorizationServer(issuer_path="/realms/x") as authz:
        authz.fault("metadata", "hang")
        kong = start_kong(declarative(plugin_config(authorization_servers=[authz.issuer], timeout=1000)), rpc_timeout=6)
        before = len(upstream.requests)
        response = http.post(kong.proxy_url + "/mcp", headers={"Authorization": f"Bearer {authz.mint()}"})
        authz.release()
    # the discovery calls themselves ended (not the server's last resort, "Timed out waiting ...")
    assert_refused(response, 503, "The authorization server's metadata could not be obtained", kong=kong)
    assert not kong.last.failures
    assert len(upstream.requests) == before
