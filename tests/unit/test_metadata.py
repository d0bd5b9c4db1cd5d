"""RFC 9728 §2/§3 document and the absolute resource_metadata URL (behaviour §3, §4)."""

from __future__ import annotations

import json

import pytest

from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.metadata import document, metadata_response, origin, paths, preflight_response

from .conftest import kong_config


def test_document_echoes_resource_and_servers_verbatim_and_omits_zero_values() -> None:
    config = parse_config(kong_config(resource="https://MCP.example.com/mcp", authorization_servers=["https://as/"]))
    assert json.loads(document(config)) == {
        "resource": "https://MCP.example.com/mcp",
        "authorization_servers": ["https://as/"],
        "bearer_methods_supported": ["header"],
    }


def test_document_lists_scopes_when_configured() -> None:
    config = parse_config(kong_config(scopes_supported=["mcp:read", "mcp:write"]))
    assert json.loads(document(config))["scopes_supported"] == ["mcp:read", "mcp:write"]


def test_metadata_response_is_public_cacheable_json_readable_cross_origin() -> None:
    response = metadata_response(b"{}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Cache-Control"].startswith("public, max-age=")


def test_preflight_echoes_only_well_formed_header_lists() -> None:
    assert preflight_response("mcp-protocol-version").headers["Access-Control-Allow-Headers"] == "mcp-protocol-version"
    assert "Access-Control-Allow-Headers" not in preflight_response('x"\r\nevil').headers


CONFIG = parse_config(kong_config(resource="https://mcp.example.com:8443/mcp"))


@pytest.mark.parametrize(
    "scheme,host,port,expected",
    [
        ("https", "gw.example.com", 443, "https://gw.example.com"),
        ("http", "gw.example.com", 80, "http://gw.example.com"),
        ("http", "localhost", 8000, "http://localhost:8000"),
        ("HTTPS", "GW.example.com", 8443, "https://gw.example.com:8443"),
        ("http", "[::1]", 8000, "http://[::1]:8000"),
        ("gopher", "gw", 8000, "https://gw:8000"),
        ("http", 'evil"host', 80, "https://mcp.example.com:8443"),
        ("http", "a b", 80, "https://mcp.example.com:8443"),
        ("http", None, 80, "https://mcp.example.com:8443"),
        ("http", "gw", 70000, "http://gw"),
        ("http", "gw", "8080", "http://gw:8080"),
    ],
)
def test_origin_comes_from_forwarded_getters_and_never_carries_unsafe_text(
    scheme: object, host: object, port: object, expected: str
) -> None:
    assert origin(CONFIG, scheme, host, port) == expected


def test_metadata_paths_default_to_kongs_suffix_plus_the_rfc_9728_inserted_form() -> None:
    config = parse_config(kong_config())
    assert paths(config)[0] == "/mcp/.well-known/oauth-protected-resource"
    assert paths(config)[1] == {
        "/mcp/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    }


@pytest.mark.parametrize("resource", ["https://mcp.example.com", "https://mcp.example.com/"])
def test_resource_without_path_serves_the_root_document(resource: str) -> None:
    config = parse_config(kong_config(resource=resource))
    assert paths(config)[0] == "/.well-known/oauth-protected-resource"
    assert paths(config)[1] == {"/.well-known/oauth-protected-resource"}


def test_metadata_endpoint_replaces_the_default_suffix_path() -> None:
    config = parse_config(kong_config(metadata_endpoint="/.well-known/oauth-protected-resource/mcp"))
    assert paths(config)[0] == "/.well-known/oauth-protected-resource/mcp"
    assert paths(config)[1] == {"/.well-known/oauth-protected-resource/mcp"}
