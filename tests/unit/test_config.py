"""Behaviour §1: the config becomes a typed object once, with Kong's entity checks made here."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from kong_plugins.ai_mcp_oauth2.client_auth import auth_method
from kong_plugins.ai_mcp_oauth2.config import parse_config, warnings
from kong_plugins.ai_mcp_oauth2.errors import ConfigError
from kong_plugins.ai_mcp_oauth2.gateway import header_claims

from .conftest import kong_config

SECRET = "s3cr3t-value-never-shown"


def refused(**overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(kong_config(**overrides))
    return info.value


def test_kong_defaults_and_nulls_parse() -> None:
    config = parse_config(kong_config())
    assert config.resource == "https://mcp.example.com/mcp"
    assert config.authorization_servers == ("https://as.example.com",)
    assert config.max_request_body_size == 1048576
    assert config.credential_claim == ("sub",)
    assert config.token_exchange.enabled is False
    assert auth_method(config) == "none"


def test_null_token_exchange_records_mean_their_defaults() -> None:
    config = parse_config(kong_config(token_exchange={
        "enabled": False, "token_endpoint": "https://as.example.com/token", "client_auth": "client_secret_basic",
        "client_id": None, "client_secret": None, "cache": None, "request": None,
    }))  # fmt: skip
    exchange = config.token_exchange
    assert exchange.cache.enabled is True and exchange.cache.ttl == 3600
    assert exchange.request.subject_token_type == "urn:ietf:params:oauth:token-type:access_token"
    assert exchange.request.actor_token_source == "none"


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"resource": None}, "resource"),
        ({"resource": "mcp.example.com/mcp"}, "resource"),
        ({"resource": "https://mcp.example.com/mcp#x"}, "resource"),
        ({"resource": "https://mcp.example.com/mcp?x=1"}, "resource"),
        ({"resource": "https://mcp.example.com/a/../mcp"}, "resource"),
        ({"resource": 'https://mcp.example.com/m"cp'}, "resource"),
        ({"authorization_servers": None}, "authorization_servers"),
        ({"authorization_servers": []}, "authorization_servers"),
        ({"authorization_servers": ["not a url"]}, "authorization_servers[1]"),
        ({"scopes_supported": ["read", 'bad"scope']}, "scopes_supported"),
        ({"scopes_supported": ["two words"]}, "scopes_supported"),
        ({"metadata_endpoint": "relative/path"}, "metadata_endpoint"),
        ({"metadata_endpoint": "/a//b"}, "metadata_endpoint"),
        ({"metadata_endpoint": "/a/b?x"}, "metadata_endpoint"),
        ({"introspection_endpoint": "ftp://as.example.com/introspect"}, "introspection_endpoint"),
        ({"jwks_endpoint": "/jwks"}, "jwks_endpoint"),
        ({"http_version": 2}, "http_version"),
        ({"timeout": 0}, "timeout"),
        ({"jwt_claims_leeway": -1}, "jwt_claims_leeway"),
        ({"max_request_body_size": 1.5}, "max_request_body_size"),
        ({"ssl_verify": "yes"}, "ssl_verify"),
        ({"client_auth": "magic"}, "client_auth"),
        ({"consumer_by": ["email"]}, "consumer_by"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    assert refused(**overrides).field == field


def test_claim_to_header_and_upstream_headers_are_mutually_exclusive() -> None:
    error = refused(
        claim_to_header=[{"claim": "sub", "header": "X-Sub"}],
        upstream_headers=[{"header": "X-Roles", "path": ["realm", "roles"]}],
    )
    assert error.field == "claim_to_header" and "mutually exclusive" in error.message


@pytest.mark.parametrize(
    "header",
    [
        "Authorization",
        "host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "TE",
        "X Bad",
        "X-Sub\r\nX-Evil",
        "",
    ],
)
def test_claim_headers_must_be_safe_header_names(header: str) -> None:
    error = refused(claim_to_header=[{"claim": "sub", "header": header}])
    assert error.field == "claim_to_header[1].header"


def test_a_header_may_be_mapped_only_once() -> None:
    error = refused(upstream_headers=[{"header": "X-A", "path": ["a"]}, {"header": "x-a", "path": ["b"]}])
    assert error.field == "upstream_headers"


def test_upstream_headers_parse_to_paths() -> None:
    config = parse_config(kong_config(upstream_headers=[{"header": "X-Roles", "path": ["realm", "roles"]}]))
    assert header_claims(config) == (("X-Roles", ("realm", "roles")),)


def exchange(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "enabled": True, "token_endpoint": "https://as.example.com/token", "client_auth": "client_secret_basic",
        "client_id": "gw", "client_secret": SECRET, "cache": None, "request": None,
    }  # fmt: skip
    record.update(overrides)
    return record


def test_token_exchange_needs_passthrough_credentials() -> None:
    assert refused(token_exchange=exchange()).field == "passthrough_credentials"
    parse_config(kong_config(token_exchange=exchange(), passthrough_credentials=True))


@pytest.mark.parametrize(
    "request_record,field",
    [
        ({"actor_token_source": "header"}, "token_exchange.request.actor_token_header"),
        ({"actor_token_source": "config"}, "token_exchange.request.actor_token"),
        (
            {"actor_token_source": "header", "actor_token_header": "Authorization"},
            "token_exchange.request.actor_token_header",
        ),
    ],
)
def test_an_actor_token_source_needs_its_value(request_record: dict[str, Any], field: str) -> None:
    error = refused(token_exchange=exchange(request=request_record), passthrough_credentials=True)
    assert error.field == field


@pytest.mark.parametrize(
    "auth,missing", [("client_secret_basic", "client_id"), ("client_secret_post", "client_secret")]
)
def test_exchange_client_auth_needs_its_credentials(auth: str, missing: str) -> None:
    error = refused(token_exchange=exchange(client_auth=auth, **{missing: None}), passthrough_credentials=True)
    assert error.field == f"token_exchange.{missing}"


def test_exchange_inherit_needs_the_top_level_client_id() -> None:
    error = refused(token_exchange=exchange(client_auth="inherit"), passthrough_credentials=True)
    assert error.field == "client_id"


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"client_auth": "client_secret_basic"}, "client_id"),
        ({"client_auth": "client_secret_post", "client_id": "gw"}, "client_secret"),
        (
            {"client_auth": "client_secret_jwt", "client_id": "gw", "client_secret": SECRET, "client_alg": "RS256"},
            "client_alg",
        ),
        ({"client_auth": "private_key_jwt", "client_id": "gw"}, "client_jwk"),
        ({"client_auth": "client_secret_jwt", "client_id": "gw", "client_secret": "short"}, "client_secret"),
        (
            {"client_auth": "client_secret_jwt", "client_id": "gw", "client_secret": "x" * 40, "client_alg": "HS512"},
            "client_secret",
        ),
        ({"client_auth": "tls_client_auth", "client_id": "gw"}, "tls_client_auth_cert"),
        ({"client_secret": SECRET}, "client_id"),  # null client_auth with a secret means basic
    ],
)
def test_introspection_client_auth_needs_its_credentials(overrides: dict[str, Any], field: str) -> None:
    error = refused(introspection_endpoint="https://as.example.com/introspect", **overrides)
    assert error.field == field


def test_pem_and_jwk_fields_must_parse() -> None:
    assert refused(tls_client_auth_cert="-----BEGIN CERTIFICATE-----\nnope\n").field == "tls_client_auth_cert"
    assert refused(tls_client_auth_key="not a key").field == "tls_client_auth_key"
    assert refused(client_jwk="{not json").field == "client_jwk"
    public = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    assert refused(client_jwk=json.dumps(public)).field == "client_jwk"


def test_a_private_jwk_as_a_json_string_is_accepted() -> None:
    key = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    config = parse_config(kong_config(
        introspection_endpoint="https://as.example.com/introspect", client_auth="private_key_jwt",
        client_id="gw", client_jwk=json.dumps(key),
    ))  # fmt: skip
    assert auth_method(config) == "private_key_jwt"


def test_client_alg_must_match_a_private_jwk() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from jwt.algorithms import RSAAlgorithm

    jwk = RSAAlgorithm.to_jwk(key)
    assert refused(client_jwk=jwk, client_alg="HS256").field == "client_alg"


def test_secrets_never_appear_in_errors_or_repr() -> None:
    error = refused(
        client_secret=SECRET, introspection_endpoint="https://as.example.com/i", client_auth="client_secret_basic"
    )
    assert SECRET not in str(error)
    config = parse_config(kong_config(
        client_secret=SECRET, client_id="gw", introspection_endpoint="https://as.example.com/i",
        headers={"X-Api-Key": SECRET}, https_proxy_authorization=SECRET,
        token_exchange=exchange(request={"actor_token_source": "config", "actor_token": SECRET}),
        passthrough_credentials=True,
    ))  # fmt: skip
    assert SECRET not in repr(config)


def test_custom_id_lookup_is_reported_as_a_warning() -> None:
    config = parse_config(kong_config(consumer_claim=["sub"]))
    assert any("custom_id" in w for w in warnings(config))
    assert warnings(parse_config(kong_config())) == []


def test_config_must_be_a_record() -> None:
    with pytest.raises(ConfigError):
        parse_config("resource=x")


def test_consumer_groups_from_a_claim_fail_closed_unless_optional() -> None:
    """The PDK offers no consumer-group lookup: refusing beats letting unmapped callers past ACLs."""
    assert refused(consumer_groups_claim=["groups"]).field == "consumer_groups_claim"
    config = parse_config(kong_config(consumer_groups_claim=["groups"], consumer_groups_optional=True))
    assert any("consumer_groups_claim" in w for w in warnings(config))


def test_inherited_exchange_credentials_are_checked_at_start() -> None:
    te = exchange(client_auth="inherit", client_id=None, client_secret=None)
    error = refused(token_exchange=te, passthrough_credentials=True, client_id="gw", client_auth="private_key_jwt")
    assert error.field == "client_jwk"


def test_introspection_headers_may_carry_authorization() -> None:
    """A static Authorization for the introspection endpoint is a valid Kong config."""
    config = parse_config(kong_config(headers={"Authorization": "Bearer static-key"}))
    assert config.headers == (("Authorization", "Bearer static-key"),)
    assert refused(headers={"Bad Name": "x"}).field == "headers"


@pytest.mark.parametrize("url", ["http://[::1", "http://host:99999/x"])
def test_unparseable_urls_are_config_errors_naming_the_field(url: str) -> None:
    assert refused(jwks_endpoint=url).field == "jwks_endpoint"


def test_an_empty_upstream_headers_array_next_to_claim_to_header_is_not_set() -> None:
    """Kong's ``mutually_exclusive`` entity checker counts an empty array as not set (``is_nonempty``),
    so this config, which Kong accepts, loads; both non-empty is refused (above)."""
    config = parse_config(kong_config(claim_to_header=[{"claim": "email", "header": "X-User"}], upstream_headers=[]))
    assert header_claims(config) == (("X-User", ("email",)),)


def _okp_jwk(**members: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from jwt.algorithms import get_default_algorithms

    data = json.loads(get_default_algorithms()["EdDSA"].to_jwk(ed25519.Ed25519PrivateKey.generate()))
    data.update(members)
    return json.dumps({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize(
    "members,client_alg,field",
    [
        ({"crv": []}, None, "client_alg"),  # a crv that is not a string: no algorithm for it
        ({"crv": "X25519"}, None, "client_alg"),  # a key-agreement curve: no signing algorithm
        ({"crv": None}, "EdDSA", "client_jwk"),  # an OKP key without crv (PyJWT's InvalidKeyError)
        ({"kty": None}, "RS256", "client_jwk"),  # no kty at all
    ],
)
def test_any_client_jwk_string_is_a_config_error_naming_the_field(
    members: dict[str, object], client_alg: str | None, field: str
) -> None:
    """Kong accepts any string as ``client_jwk``: an unusable one fails closed, naming a field, never a crash."""
    assert refused(client_jwk=_okp_jwk(**members), client_alg=client_alg).field == field
