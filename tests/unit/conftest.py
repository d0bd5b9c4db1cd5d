from __future__ import annotations

from typing import Any

import pytest


def kong_config(**overrides: Any) -> dict[str, Any]:
    """A config as Kong passes it: every field present, absent ones null, defaults filled."""
    base: dict[str, Any] = {
        "args": None, "authorization_servers": ["https://as.example.com"], "cache_introspection": True,
        "claim_to_header": None, "client_alg": None, "client_auth": None, "client_id": None,
        "client_jwk": None, "client_secret": None, "consumer_by": ["custom_id", "username"],
        "consumer_claim": None, "consumer_groups_claim": None, "consumer_groups_optional": False,
        "consumer_optional": False, "credential_claim": ["sub"], "headers": None, "http_proxy": None,
        "http_proxy_authorization": None, "http_version": 1.1, "https_proxy": None,
        "https_proxy_authorization": None, "insecure_relaxed_audience_validation": False,
        "introspection_endpoint": None, "introspection_format": None, "jwks_cache_ttl": 3600,
        "jwks_endpoint": None, "jwt_claims_leeway": 0, "keepalive": True,
        "max_request_body_size": 1048576, "metadata_cache_ttl": 3600,
        "metadata_discovery_endpoint": None, "metadata_discovery_retry": 3, "metadata_endpoint": None,
        "mtls_introspection_endpoint": None, "no_proxy": None, "passthrough_credentials": False,
        "resource": "https://mcp.example.com/mcp", "scopes_supported": None, "ssl_verify": True,
        "timeout": 10000, "tls_client_auth_cert": None, "tls_client_auth_key": None,
        "tls_client_auth_ssl_verify": True, "token_exchange": None, "upstream_headers": None,
        "__plugin_id": "6f1d9c1e-0000-4000-8000-000000000001", "__seq__": 1, "__key__": "k",
        "__ws_id": "6f1d9c1e-0000-4000-8000-000000000002", "plugin_instance_name": None,
    }  # fmt: skip
    base.update(overrides)
    return base


@pytest.fixture
def config_dict() -> dict[str, Any]:
    return kong_config()
