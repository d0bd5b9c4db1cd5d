"""Kong schema declaration of the plugin's configuration (data only).

The fields, types, defaults, ``one_of`` values, ``required`` flags and length rules are
those of Kong Gateway 3.14's ``ai-mcp-oauth2`` (3.15 is identical), written in Kong's
schema DSL, the form kong-pdk hands to Kong in the plugin-info dump. ``len_min`` stands
for the ``minLength`` of Kong's published JSON schema; ``referenceable`` lets Kong resolve
vault references before the config reaches the plugin. Every field has a description
(Kong's metaschema requires 10 to 500 characters), which also feeds the README's
configuration reference. ``tests/unit/test_schema.py`` checks this file field by field
against Kong's published JSON schema kept in ``tests/fixtures``.
"""

from __future__ import annotations

from typing import Any

SCHEMA: list[dict[str, Any]] = [
    {
        "args": {
            "type": "map",
            "keys": {"type": "string"},
            "values": {"type": "string"},
            "description": "Additional arguments to send in the POST body.",
        }
    },
    {
        "authorization_servers": {
            "type": "array",
            "elements": {"type": "string", "description": "The authorization server identifier."},
            "required": True,
            "len_min": 1,
            "description": "The issuer identifiers of the authorization servers that may issue tokens for this resource (RFC 9728 authorization_servers; also the accepted `iss` values).",
        }
    },
    {
        "cache_introspection": {
            "type": "boolean",
            "default": True,
            "description": "If enabled, the plugin will cache the introspection response for the access token. This can improve performance by reducing the number of introspection requests to the authorization server.",
        }
    },
    {
        "claim_to_header": {
            "type": "array",
            "elements": {
                "type": "record",
                "fields": [
                    {
                        "claim": {
                            "type": "string",
                            "required": True,
                            "description": "The claim name to be used in the access token.",
                        }
                    },
                    {
                        "header": {
                            "type": "string",
                            "required": True,
                            "description": "The HTTP header name to be used for forwarding the claim value to the upstream.",
                        }
                    },
                ],
            },
            "len_min": 1,
            "description": "Map top-level token claims to upstream headers. Mutually exclusive with upstream_headers.",
        }
    },
    {
        "client_alg": {
            "type": "string",
            "one_of": [
                "ES256",
                "ES384",
                "ES512",
                "EdDSA",
                "HS256",
                "HS384",
                "HS512",
                "PS256",
                "PS384",
                "PS512",
                "RS256",
                "RS384",
                "RS512",
            ],
            "description": "The client JWT signing algorithm.",
        }
    },
    {
        "client_auth": {
            "type": "string",
            "one_of": [
                "client_secret_basic",
                "client_secret_jwt",
                "client_secret_post",
                "none",
                "private_key_jwt",
                "self_signed_tls_client_auth",
                "tls_client_auth",
            ],
            "description": "The client authentication method.",
        }
    },
    {"client_id": {"type": "string", "referenceable": True, "description": "The client ID for authentication."}},
    {
        "client_jwk": {
            "type": "string",
            "referenceable": True,
            "encrypted": True,
            "description": "The client JWK for private_key_jwt authentication.",
        }
    },
    {
        "client_secret": {
            "type": "string",
            "referenceable": True,
            "encrypted": True,
            "description": "The client secret for authentication.",
        }
    },
    {
        "consumer_by": {
            "type": "array",
            "elements": {"type": "string", "one_of": ["custom_id", "id", "username"]},
            "default": ["custom_id", "username"],
            "len_min": 1,
            "description": "Consumer fields used for mapping: - `id`: try to find the matching Consumer by `id` - `username`: try to find the matching Consumer by `username` - `custom_id`: try to find the matching Consumer by `custom_id`.",
        }
    },
    {
        "consumer_claim": {
            "type": "array",
            "elements": {"type": "string"},
            "len_min": 1,
            "description": "The claim used for consumer mapping. If multiple values are set, it means the claim is inside a nested object of the token payload.",
        }
    },
    {
        "consumer_groups_claim": {
            "type": "array",
            "elements": {"type": "string"},
            "len_min": 1,
            "description": "The claim used for consumer groups mapping. If multiple values are set, it means the claim is inside a nested object of the token payload.",
        }
    },
    {
        "consumer_groups_optional": {
            "type": "boolean",
            "default": False,
            "description": "Do not terminate the request if consumer groups mapping fails.",
        }
    },
    {
        "consumer_optional": {
            "type": "boolean",
            "default": False,
            "description": "Do not terminate the request if consumer mapping fails.",
        }
    },
    {
        "credential_claim": {
            "type": "array",
            "elements": {"type": "string"},
            "default": ["sub"],
            "description": "The claim used to derive virtual credentials (e.g. to be consumed by the rate-limiting plugin), in case the consumer mapping is not used. If multiple values are set, it means the claim is inside a nested object of the token payload.",
        }
    },
    {
        "headers": {
            "type": "map",
            "keys": {"type": "string"},
            "values": {"type": "string"},
            "description": "Additional headers for the introspection request.",
        }
    },
    {"http_proxy": {"type": "string", "description": "HTTP proxy to use."}},
    {"http_proxy_authorization": {"type": "string", "description": "HTTP proxy authorization header."}},
    {"http_version": {"type": "number", "default": 1.1, "description": "The HTTP version used for requests."}},
    {"https_proxy": {"type": "string", "description": "HTTPS proxy to use."}},
    {"https_proxy_authorization": {"type": "string", "description": "HTTPS proxy authorization header."}},
    {
        "insecure_relaxed_audience_validation": {
            "type": "boolean",
            "default": False,
            "description": "If enabled, the plugin will not validate the audience of the access token. Disable it if the authorization server does not correctly set the audience claim according to RFC 8707 and MCP specification.",
        }
    },
    {
        "introspection_endpoint": {
            "type": "string",
            "description": "The Token Introspection Endpoint. If not provided, the plugin will attempt to use JWKS to verify the token. If the token is opaque, this field must be provided.",
        }
    },
    {
        "introspection_format": {
            "type": "string",
            "one_of": ["base64", "base64url", "string"],
            "description": "Controls introspection response format.",
        }
    },
    {"jwks_cache_ttl": {"type": "integer", "default": 3600, "description": "The cache TTL in seconds for JWKS."}},
    {
        "jwks_endpoint": {
            "type": "string",
            "description": "The JWKS endpoint URL for fetching the authorization server's public keys. If not provided, the plugin will attempt to discover it from the authorization server metadata.",
        }
    },
    {
        "jwt_claims_leeway": {
            "type": "integer",
            "default": 0,
            "description": "The leeway in seconds for JWT claims validation (exp, nbf). This allows tokens that are slightly expired or not yet valid due to clock skew.",
        }
    },
    {"keepalive": {"type": "boolean", "default": True, "description": "Enable HTTP keepalive for requests."}},
    {
        "max_request_body_size": {
            "type": "integer",
            "default": 1048576,
            "description": "max allowed body size allowed to be handled as MCP request. 0 means unlimited, but the size of this body will still be limited by Nginx's client_max_body_size.",
        }
    },
    {
        "metadata_cache_ttl": {
            "type": "integer",
            "default": 3600,
            "description": "The cache TTL in seconds for discovered authorization server metadata.",
        }
    },
    {
        "metadata_discovery_endpoint": {
            "type": "string",
            "description": "Custom OAuth 2.0 authorization server metadata discovery URL. If provided, the plugin will use this URL directly instead of trying standard well-known discovery paths. The custom endpoint URL should end with either '/.well-known/openid-configuration' or '/.well-known/oauth-authorization-server'.",
        }
    },
    {
        "metadata_discovery_retry": {
            "type": "integer",
            "default": 3,
            "description": "The number of retry attempts for metadata discovery requests per URL.",
        }
    },
    {
        "metadata_endpoint": {
            "type": "string",
            "description": "The path for OAuth 2.0 Protected Resource Metadata. Default to $resource/.well-known/oauth-protected-resource. For example, if the configured resource is https://api.example.com/mcp, the metadata endpoint is /mcp/.well-known/oauth-protected-resource.",
        }
    },
    {
        "mtls_introspection_endpoint": {
            "type": "string",
            "description": "The mTLS alias for the introspection endpoint.",
        }
    },
    {"no_proxy": {"type": "string", "description": "Comma-separated list of hosts to exclude from proxy."}},
    {
        "passthrough_credentials": {
            "type": "boolean",
            "default": False,
            "description": "Keep the credentials used for authentication in the request. If multiple credentials are sent with the same request, the plugin will keep those that were used for successful authentication.",
        }
    },
    {"resource": {"type": "string", "required": True, "description": "The resource identifier."}},
    {
        "scopes_supported": {
            "type": "array",
            "elements": {
                "type": "string",
                "description": "Recommended scopes that are used in authorization requests to request access to this protected resource.",
            },
            "len_min": 1,
            "description": "Scopes advertised in the protected resource metadata and in the `scope` parameter of challenges.",
        }
    },
    {"ssl_verify": {"type": "boolean", "default": True, "description": "Verify the SSL certificate."}},
    {"timeout": {"type": "number", "default": 10000, "description": "Network I/O timeout in milliseconds."}},
    {"tls_client_auth_cert": {"type": "string", "description": "PEM-encoded client certificate for mTLS."}},
    {"tls_client_auth_key": {"type": "string", "description": "PEM-encoded private key for mTLS."}},
    {
        "tls_client_auth_ssl_verify": {
            "type": "boolean",
            "default": True,
            "description": "Verify server certificate in mTLS.",
        }
    },
    {
        "token_exchange": {
            "type": "record",
            "fields": [
                {
                    "cache": {
                        "type": "record",
                        "fields": [
                            {
                                "enabled": {
                                    "type": "boolean",
                                    "default": True,
                                    "description": "Whether to cache exchanged token",
                                }
                            },
                            {
                                "ttl": {
                                    "type": "integer",
                                    "default": 3600,
                                    "description": "The default cache TTL to store exchanged token. If the exchange endpoint does not provide 'expires_in' data when token is exchanged this TTL value will be used to cache it.",
                                }
                            },
                        ],
                        "description": "Caching of exchanged tokens.",
                    }
                },
                {
                    "client_auth": {
                        "type": "string",
                        "default": "client_secret_basic",
                        "one_of": ["client_secret_basic", "client_secret_post", "inherit", "none"],
                        "description": "The type of authentication method to use with the exchange endpoint. Use 'inherit' to use the same client_id, and secret as in introspection_endpoint.",
                    }
                },
                {
                    "client_id": {
                        "type": "string",
                        "referenceable": True,
                        "description": "The client ID for authentication.",
                    }
                },
                {
                    "client_secret": {
                        "type": "string",
                        "referenceable": True,
                        "encrypted": True,
                        "description": "The client secret for authentication.",
                    }
                },
                {
                    "enabled": {
                        "type": "boolean",
                        "default": False,
                        "description": "Whether Token Exchange should be enabled",
                    }
                },
                {
                    "request": {
                        "type": "record",
                        "fields": [
                            {
                                "actor_token": {
                                    "type": "string",
                                    "description": "Static actor token value (when source is config).",
                                }
                            },
                            {
                                "actor_token_header": {
                                    "type": "string",
                                    "description": "Header name containing actor token (when source is header).",
                                }
                            },
                            {
                                "actor_token_source": {
                                    "type": "string",
                                    "default": "none",
                                    "one_of": ["config", "header", "none"],
                                    "description": "Where to obtain actor token.",
                                }
                            },
                            {
                                "actor_token_type": {
                                    "type": "string",
                                    "default": "urn:ietf:params:oauth:token-type:access_token",
                                    "description": "The token type identifier of actor token.",
                                }
                            },
                            {
                                "audience": {
                                    "type": "array",
                                    "elements": {"type": "string"},
                                    "len_min": 1,
                                    "description": "Audiences used in the token exchange request.",
                                }
                            },
                            {
                                "requested_token_type": {
                                    "type": "string",
                                    "default": "urn:ietf:params:oauth:token-type:access_token",
                                    "description": "The desired output token type.",
                                }
                            },
                            {
                                "resource": {
                                    "type": "string",
                                    "description": "The absolute URI of target MCP service where token will be used.",
                                }
                            },
                            {
                                "scopes": {
                                    "type": "array",
                                    "elements": {"type": "string"},
                                    "len_min": 1,
                                    "description": "Scopes used in the token exchange request.",
                                }
                            },
                            {
                                "subject_token_type": {
                                    "type": "string",
                                    "default": "urn:ietf:params:oauth:token-type:access_token",
                                    "description": "The type of token to be exchanged.",
                                }
                            },
                        ],
                        "description": "Parameters of the RFC 8693 token exchange request.",
                    }
                },
                {"token_endpoint": {"type": "string", "required": True, "description": "The token exchange endopint."}},
            ],
            "description": "Configuration details about token exchange that should happen before reaching upstream MCP server",
        }
    },
    {
        "upstream_headers": {
            "type": "array",
            "elements": {
                "type": "record",
                "fields": [
                    {"header": {"type": "string", "required": True, "description": "The name of the header."}},
                    {
                        "path": {
                            "type": "array",
                            "elements": {"type": "string"},
                            "required": True,
                            "len_min": 1,
                            "description": "The path of the header value.",
                        }
                    },
                ],
            },
            "description": "Map token claims to upstream headers using path-based access. Each entry specifies a header name and a path (array of strings) to traverse the token claims. Mutually exclusive with claim_to_header.",
        }
    },
]
