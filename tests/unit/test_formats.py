"""The formats Kong's schema cannot say (``formats.py``), each refusing with the field's name only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2 import formats
from kong_plugins.ai_mcp_oauth2.errors import ConfigError

from .fakes import make_client_cert

CERT, KEY = make_client_cert()


@pytest.mark.parametrize(
    "check,value",
    [
        (formats.url, "https://as.example.com/introspect?tenant=1"),
        (formats.url, "http://[::1]:8080/jwks"),
        (formats.issuer, "https://as.example.com/tenant"),
        (formats.resource_identifier, "https://mcp.example.com"),
        (formats.resource_identifier, "https://mcp.example.com/a/mcp/"),
        (formats.normal_path, "/.well-known/oauth-protected-resource/mcp"),
        (formats.header_name, "X-User_Email"),
        (formats.header_names, (("Authorization", "Bearer x"), ("X-Api-Key", "k"))),
        (formats.scope_tokens, ("read", "repo:write", "https://api.example.com/a.b")),
        (formats.http_version, 1.0),
        (formats.http_version, 1.1),
        (formats.positive, 0.5),
        (formats.pem_certificate, CERT),
        (formats.pem_private_key, KEY),
    ],
)
def test_values_in_format_pass(check: Callable[[str, Any], None], value: Any) -> None:
    assert check("field", value) is None


@pytest.mark.parametrize(
    "check,value,message",
    [
        (formats.url, "as.example.com/x", "absolute"),
        (formats.url, "ftp://as.example.com/x", "absolute"),
        (formats.url, "https:///x", "absolute"),
        (formats.url, "https://as.example.com/x#frag", "fragment"),
        (formats.url, "https://as.example.com/a b", "spaces"),
        (formats.url, 'https://as.example.com/"', "quotes"),
        (formats.url, "http://host:99999/x", "valid URL"),
        (formats.issuer, "https://as.example.com/?x=1", "query"),
        (formats.resource_identifier, "https://mcp.example.com/a//b", "normalised"),
        (formats.resource_identifier, "https://mcp.example.com/a/./b", "normalised"),
        (formats.normal_path, "relative", "absolute, normalised"),
        (formats.normal_path, "/a/../b", "absolute, normalised"),
        (formats.header_name, "X Bad", "valid HTTP header name"),
        (formats.header_name, "Authorization", "controls"),
        (formats.header_name, "transfer-encoding", "controls"),
        (formats.header_names, (("Bad Name", "x"),), "valid HTTP header name"),
        (formats.scope_tokens, ("ok", 'bad"'), "scope-token"),
        (formats.scope_tokens, ("two words",), "scope-token"),
        (formats.http_version, 2.0, "1.0 and 1.1"),
        (formats.positive, 0, "greater than 0"),
        (formats.pem_certificate, "-----BEGIN CERTIFICATE-----\nnope\n", "certificate"),
        (formats.pem_private_key, CERT, "private key"),
    ],
)
def test_values_out_of_format_are_refused_naming_the_field(
    check: Callable[[str, Any], None], value: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check("the_field", value)
    assert info.value.field == "the_field"
    assert message in info.value.message


def test_a_refusal_never_repeats_the_value() -> None:
    secret = "https://user:s3cr3t-never-shown@as.example.com/x#frag"
    with pytest.raises(ConfigError) as info:
        formats.url("http_proxy", secret)
    assert "s3cr3t" not in str(info.value)
