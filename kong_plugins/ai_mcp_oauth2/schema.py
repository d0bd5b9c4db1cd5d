"""The plugin's configuration, declared once: each field's name, Python type, Kong type, default,
allowed values and description, and the format Kong's schema cannot say.

The fields, types, defaults, ``one_of`` values, ``required`` flags and length rules are those of
Kong Gateway 3.14's ``ai-mcp-oauth2`` (3.15 is identical). Each record is a frozen dataclass whose
fields are declared with :func:`string`, :func:`boolean`, :func:`integer`, :func:`number`,
:func:`array`, :func:`string_map` and :func:`record`; :data:`SCHEMA`, the form kong-pdk hands to
Kong in the plugin-info dump (Kong's schema DSL), is generated from them, and
:func:`~.config.parse_config` reads Kong's config into them. ``len_min`` stands for the
``minLength`` of Kong's published JSON schema; ``referenceable`` lets Kong resolve vault references
before the config reaches the plugin; ``secret`` keeps a value out of ``repr``. Every field has a
description (Kong's metaschema requires 10 to 500 characters), which also feeds the configuration
reference. ``tests/unit/test_schema.py`` checks the generated schema field by field against Kong's
published JSON schema kept in ``tests/fixtures``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import formats

Check = Callable[[str, Any], None]
"""A format check: called with the field's name (for the error) and its value; raises ConfigError."""


@dataclass(frozen=True)
class Spec:
    """How one field is declared: Kong's DSL for it, plus what Python needs to read it."""

    kong: dict[str, Any]  # the field in Kong's schema DSL, as Kong receives it (records without "fields")
    record: type | None = None  # the dataclass of a record, or of an array's record elements
    check: Check | None = None  # a format of the whole value
    element_check: Check | None = None  # a format of each element of an array
    minimum: int | None = None  # integers: the smallest value (every integer here counts seconds, bytes or tries)
    maximum: int | None = None  # integers: the largest value (a port)
    extension: bool = False  # a field beyond Kong 3.14's schema (optional, its default keeps Kong's behaviour)


@dataclass(frozen=True)
class Element:
    """The elements of an array of strings."""

    kong: dict[str, Any]
    check: Check | None = None


def _declare(spec: Spec, secret: bool = False) -> Any:
    return dataclasses.field(repr=not secret, metadata={"spec": spec})


def _dsl(kind: str, description: str | None, **options: Any) -> dict[str, Any]:
    dsl: dict[str, Any] = {"type": kind}
    dsl.update({key: value for key, value in options.items() if value not in (None, False, ())})
    if description is not None:
        dsl["description"] = description
    return dsl


def string(
    description: str,
    *,
    required: bool = False,
    default: str | None = None,
    one_of: Sequence[str] = (),
    referenceable: bool = False,
    encrypted: bool = False,
    secret: bool = False,
    check: Check | None = None,
    extension: bool = False,
) -> Any:
    """A string field (``str``, or ``str | None`` without a default)."""
    one = list(one_of) or None
    dsl = _dsl("string", description, required=required, default=default, one_of=one,
               referenceable=referenceable, encrypted=encrypted)  # fmt: skip
    return _declare(Spec(dsl, check=check, extension=extension), secret or encrypted)


def boolean(description: str, *, default: bool, extension: bool = False) -> Any:
    """A boolean field."""
    dsl = {"type": "boolean", "default": default, "description": description}
    return _declare(Spec(dsl, extension=extension))


def integer(
    description: str,
    *,
    default: int | None,
    minimum: int = 0,
    maximum: int | None = None,
    referenceable: bool = False,
    extension: bool = False,
) -> Any:
    """An integer field; Kong's whole numbers arrive as ``int`` or as a float with no fraction."""
    dsl: dict[str, Any] = {"type": "integer"}
    if default is not None:
        dsl["default"] = default
    if maximum is not None:
        dsl["between"] = [minimum, maximum]
    if referenceable:
        dsl["referenceable"] = True
    dsl["description"] = description
    return _declare(Spec(dsl, minimum=minimum, maximum=maximum, extension=extension))


def number(description: str, *, default: float, check: Check | None = None) -> Any:
    """A number field, read as ``float``."""
    dsl = {"type": "number", "default": default, "description": description}
    return _declare(Spec(dsl, check=check))


def text(*, description: str | None = None, one_of: Sequence[str] = (), check: Check | None = None) -> Element:
    """The elements of an array of strings (never empty, as Kong's strings)."""
    return Element(_dsl("string", description, one_of=list(one_of) or None), check)


def array(
    description: str,
    elements: Element | type,
    *,
    required: bool = False,
    default: list[str] | None = None,
    len_min: int | None = None,
    check: Check | None = None,
    extension: bool = False,
) -> Any:
    """An array (a ``tuple``) of strings (:func:`text`) or of records (a declared dataclass)."""
    if isinstance(elements, Element):
        element_dsl, record_type, element_check = elements.kong, None, elements.check
    else:
        element_dsl, record_type, element_check = {"type": "record"}, elements, None
    dsl = _dsl("array", description, elements=element_dsl, required=required, default=default, len_min=len_min)
    return _declare(Spec(dsl, record=record_type, check=check, element_check=element_check, extension=extension))


def required_strings(description: str, check: Check) -> Any:
    """A required, non-empty array of strings, each of the format ``check``."""
    return array(description, text(check=check), required=True, len_min=1)


def string_map(description: str, *, secret: bool = False, check: Check | None = None) -> Any:
    """A map of strings to strings, read as a tuple of (key, value) pairs."""
    dsl = {"type": "map", "keys": {"type": "string"}, "values": {"type": "string"}, "description": description}
    return _declare(Spec(dsl, check=check), secret)


def record(record_type: type, description: str, *, extension: bool = False) -> Any:
    """A nested record; Kong leaves it ``null`` when the user omits it, which means its defaults."""
    return _declare(Spec({"type": "record", "description": description}, record=record_type, extension=extension))


def spec(field: dataclasses.Field[Any]) -> Spec:
    """The declaration of one field of a declared record."""
    declared: Spec = field.metadata["spec"]
    return declared


def kong_fields(record_type: type) -> list[dict[str, Any]]:
    """Kong's DSL for the fields of a declared record, in declaration order."""
    out: list[dict[str, Any]] = []
    for field in dataclasses.fields(record_type):
        declared = spec(field)
        dsl = dict(declared.kong)
        if declared.record is not None and dsl["type"] == "record":
            dsl["fields"] = kong_fields(declared.record)
        elif declared.record is not None:
            dsl["elements"] = {"type": "record", "fields": kong_fields(declared.record)}
        out.append({field.name: dsl})
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimToHeader:
    """One ``claim_to_header`` entry: a top-level claim forwarded as an upstream header (behaviour §8)."""

    claim: str = string("The claim name to be used in the access token.", required=True)
    header: str = string(
        "The HTTP header name to be used for forwarding the claim value to the upstream.",
        required=True,
        check=formats.header_name,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeCache:
    """``token_exchange.cache``: how long exchanged tokens are reused (behaviour §9)."""

    enabled: bool = boolean("Whether to cache exchanged token", default=True)
    ttl: int = integer(
        "The default cache TTL to store exchanged token. If the exchange endpoint does not provide 'expires_in' data when token is exchanged this TTL value will be used to cache it.",
        default=3600,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeRequest:
    """``token_exchange.request``: the parameters of the RFC 8693 §2.1 request."""

    actor_token: str | None = string("Static actor token value (when source is config).", secret=True)
    actor_token_header: str | None = string(
        "Header name containing actor token (when source is header).", check=formats.header_name
    )
    actor_token_source: str = string(
        "Where to obtain actor token.", default="none", one_of=("config", "header", "none")
    )
    actor_token_type: str = string(
        "The token type identifier of actor token.", default="urn:ietf:params:oauth:token-type:access_token"
    )
    audience: tuple[str, ...] = array("Audiences used in the token exchange request.", text(), len_min=1)
    requested_token_type: str = string(
        "The desired output token type.", default="urn:ietf:params:oauth:token-type:access_token"
    )
    resource: str | None = string("The absolute URI of target MCP service where token will be used.", check=formats.url)
    scopes: tuple[str, ...] = array(
        "Scopes used in the token exchange request.", text(), len_min=1, check=formats.scope_tokens
    )
    subject_token_type: str = string(
        "The type of token to be exchanged.", default="urn:ietf:params:oauth:token-type:access_token"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenExchange:
    """``token_exchange`` (RFC 8693). ``token_endpoint`` is required whenever the record is given;
    it is ``None`` only when Kong left the whole record ``null`` (then exchange is off)."""

    cache: ExchangeCache = record(ExchangeCache, "Caching of exchanged tokens.")
    client_auth: str = string(
        "The type of authentication method to use with the exchange endpoint. Use 'inherit' to use the same client_id, and secret as in introspection_endpoint.",
        default="client_secret_basic",
        one_of=("client_secret_basic", "client_secret_post", "inherit", "none"),
    )
    client_id: str | None = string("The client ID for authentication.", referenceable=True)
    client_secret: str | None = string("The client secret for authentication.", referenceable=True, encrypted=True)
    enabled: bool = boolean("Whether Token Exchange should be enabled", default=False)
    request: ExchangeRequest = record(ExchangeRequest, "Parameters of the RFC 8693 token exchange request.")
    token_endpoint: str | None = string("The token exchange endopint.", required=True, check=formats.url)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamHeader:
    """One ``upstream_headers`` entry: a claim found by its path forwarded as a header (behaviour §8)."""

    header: str = string("The name of the header.", required=True, check=formats.header_name)
    path: tuple[str, ...] = array("The path of the header value.", text(), required=True, len_min=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class McpOperation:
    """One ``mcp_operations`` entry: the scopes one MCP operation needs besides the route's (extension)."""

    method: str = string(
        "The JSON-RPC method of the operation, such as tools/call, resources/read, prompts/get or tools/list.",
        required=True,
    )
    name: str | None = string(
        "The tool or prompt name, or the resource URI, of the operation; a trailing * matches a prefix. Unset: every operation of the method."
    )
    scopes_required: tuple[str, ...] = required_strings(
        "Scopes the operation needs: each entry a space-separated set that must all be granted; the entries are alternatives.",
        formats.scope_set,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeImplication:
    """One ``scope_hierarchy`` entry: a broader scope and the narrower ones it implies (extension)."""

    scope: str = string("A scope that implies others.", required=True, check=formats.scope_token)
    implies: tuple[str, ...] = required_strings(
        "The scopes holding it implies, transitively (never the reverse).", formats.scope_token
    )


def _port(referenceable: bool = False) -> Any:
    """A Redis port, as Kong's shared Redis record declares it (``typedefs.port``, 6379)."""
    description = "An integer representing a port number between 0 and 65535, inclusive."
    return integer(description, default=6379, maximum=65535, referenceable=referenceable)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSentinelNode:
    """One ``cluster_cache_redis.sentinel_nodes`` entry (Kong's shared Redis record)."""

    host: str = string("A string representing a host name, such as example.com.", default="127.0.0.1")
    port: int = _port()


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisClusterNode:
    """One ``cluster_cache_redis.cluster_nodes`` entry (Kong's shared Redis record)."""

    ip: str = string("A string representing a host name, such as example.com.", default="127.0.0.1")
    port: int = _port()


_TIMEOUT = "An integer representing a timeout in milliseconds. Must be between 0 and 2^31-2."


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterCacheRedis:
    """``cluster_cache_redis``: Kong's shared Redis record, with Kong's names and defaults (extension;
    behaviour §13). ``sentinel_*`` fields select Redis Sentinel, ``cluster_nodes`` Redis Cluster,
    otherwise ``host``/``port`` is one Redis server."""

    host: str = string(
        "A string representing a host name, such as example.com.", default="127.0.0.1", referenceable=True
    )
    port: int = _port(referenceable=True)
    username: str | None = string(
        "Username to use for Redis connections. If undefined, ACL authentication won't be performed. This requires Redis v6.0.0+. To be compatible with Redis v5.x.y, you can set it to `default`.",
        referenceable=True,
    )
    password: str | None = string(
        "Password to use for Redis connections. If undefined, no AUTH commands are sent to Redis.",
        referenceable=True,
        encrypted=True,
    )
    database: int = integer("Database to use for the Redis connection when using the `redis` strategy", default=0)
    ssl: bool = boolean("If set to true, uses SSL to connect to Redis.", default=False)
    ssl_verify: bool = boolean(
        "If set to true, verifies the validity of the server SSL certificate against the system's trusted CAs.",
        default=True,
    )
    server_name: str | None = string(
        "A string representing an SNI (server name indication) value for TLS.", referenceable=True
    )
    connect_timeout: int = integer(_TIMEOUT, default=2000, maximum=2147483646)
    send_timeout: int = integer(_TIMEOUT, default=2000, maximum=2147483646)
    read_timeout: int = integer(_TIMEOUT, default=2000, maximum=2147483646)
    keepalive_pool_size: int = integer(
        "The most connections to Redis a plugin instance keeps open at once, per node with Redis Cluster (beyond it, a request waits for one within connect_timeout with one Redis server, and goes without Redis with Sentinel or Redis Cluster).",
        default=256,
        minimum=1,
        maximum=2147483646,
    )
    keepalive_backlog: int | None = integer(
        "Accepted for Kong compatibility; the plugin server's requests wait for a free connection instead of queueing in a backlog.",
        default=None,
        maximum=2147483646,
    )
    connection_is_proxied: bool = boolean(
        "If the connection to Redis is proxied (e.g. Envoy), set it `true`. Set the `host` and `port` to point to the proxy address.",
        default=False,
    )
    sentinel_master: str | None = string(
        "Sentinel master to use for Redis connections. Defining this value implies using Redis Sentinel."
    )
    sentinel_role: str | None = string(
        "Sentinel role to use for Redis connections when the `redis` strategy is defined. Defining this value implies using Redis Sentinel.",
        one_of=("any", "master", "slave"),
    )
    sentinel_nodes: tuple[RedisSentinelNode, ...] = array(
        "Sentinel node addresses to use for Redis connections when the `redis` strategy is defined. Defining this field implies using a Redis Sentinel. The minimum length of the array is 1 element.",
        RedisSentinelNode,
        len_min=1,
    )
    sentinel_username: str | None = string(
        "Sentinel username to authenticate with a Redis Sentinel instance. If undefined, ACL authentication won't be performed. This requires Redis v6.2.0+.",
        referenceable=True,
    )
    sentinel_password: str | None = string(
        "Sentinel password to authenticate with a Redis Sentinel instance. If undefined, no AUTH commands are sent to Redis Sentinels.",
        referenceable=True,
        encrypted=True,
    )
    cluster_nodes: tuple[RedisClusterNode, ...] = array(
        "Cluster addresses to use for Redis connections when the `redis` strategy is defined. Defining this field implies using a Redis Cluster. The minimum length of the array is 1 element.",
        RedisClusterNode,
        len_min=1,
    )
    cluster_max_redirections: int = integer("Maximum retry attempts for redirection.", default=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """One plugin instance's configuration: Kong 3.14's fields, read and checked by ``config.py``, frozen."""

    args: tuple[tuple[str, str], ...] = string_map("Additional arguments to send in the POST body.")
    authorization_servers: tuple[str, ...] = array(
        "The issuer identifiers of the authorization servers that may issue tokens for this resource (RFC 9728 authorization_servers; also the accepted `iss` values).",
        text(description="The authorization server identifier.", check=formats.issuer),
        required=True,
        len_min=1,
    )
    cache_introspection: bool = boolean(
        "If enabled, the plugin will cache the introspection response for the access token. This can improve performance by reducing the number of introspection requests to the authorization server.",
        default=True,
    )
    claim_to_header: tuple[ClaimToHeader, ...] = array(
        "Map top-level token claims to upstream headers. Mutually exclusive with upstream_headers.",
        ClaimToHeader,
        len_min=1,
    )
    client_alg: str | None = string(
        "The client JWT signing algorithm.",
        one_of=(
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
        ),
    )
    client_auth: str | None = string(
        "The client authentication method.",
        one_of=(
            "client_secret_basic",
            "client_secret_jwt",
            "client_secret_post",
            "none",
            "private_key_jwt",
            "self_signed_tls_client_auth",
            "tls_client_auth",
        ),
    )
    client_id: str | None = string("The client ID for authentication.", referenceable=True)
    client_jwk: str | None = string(
        "The client JWK for private_key_jwt authentication.", referenceable=True, encrypted=True
    )
    client_secret: str | None = string("The client secret for authentication.", referenceable=True, encrypted=True)
    consumer_by: tuple[str, ...] = array(
        "Consumer fields used for mapping: - `id`: try to find the matching Consumer by `id` - `username`: try to find the matching Consumer by `username` - `custom_id`: try to find the matching Consumer by `custom_id`.",
        text(one_of=("custom_id", "id", "username")),
        default=["custom_id", "username"],
        len_min=1,
    )
    consumer_claim: tuple[str, ...] = array(
        "The claim used for consumer mapping. If multiple values are set, it means the claim is inside a nested object of the token payload.",
        text(),
        len_min=1,
    )
    consumer_groups_claim: tuple[str, ...] = array(
        "The claim used for consumer groups mapping. If multiple values are set, it means the claim is inside a nested object of the token payload.",
        text(),
        len_min=1,
    )
    consumer_groups_optional: bool = boolean(
        "Do not terminate the request if consumer groups mapping fails.", default=False
    )
    consumer_optional: bool = boolean("Do not terminate the request if consumer mapping fails.", default=False)
    credential_claim: tuple[str, ...] = array(
        "The claim used to derive virtual credentials (e.g. to be consumed by the rate-limiting plugin), in case the consumer mapping is not used. If multiple values are set, it means the claim is inside a nested object of the token payload.",
        text(),
        default=["sub"],
    )
    headers: tuple[tuple[str, str], ...] = string_map(
        "Additional headers for the introspection request.", secret=True, check=formats.header_names
    )
    http_proxy: str | None = string("HTTP proxy to use.", check=formats.url)
    http_proxy_authorization: str | None = string("HTTP proxy authorization header.", secret=True)
    http_version: float = number("The HTTP version used for requests.", default=1.1, check=formats.http_version)
    https_proxy: str | None = string("HTTPS proxy to use.", check=formats.url)
    https_proxy_authorization: str | None = string("HTTPS proxy authorization header.", secret=True)
    insecure_relaxed_audience_validation: bool = boolean(
        "If enabled, the plugin will not validate the audience of the access token. Disable it if the authorization server does not correctly set the audience claim according to RFC 8707 and MCP specification.",
        default=False,
    )
    introspection_endpoint: str | None = string(
        "The Token Introspection Endpoint. If not provided, the plugin will attempt to use JWKS to verify the token. If the token is opaque, this field must be provided.",
        check=formats.url,
    )
    introspection_format: str | None = string(
        "Controls introspection response format.", one_of=("base64", "base64url", "string")
    )
    jwks_cache_ttl: int = integer("The cache TTL in seconds for JWKS.", default=3600)
    jwks_endpoint: str | None = string(
        "The JWKS endpoint URL for fetching the authorization server's public keys. If not provided, the plugin will attempt to discover it from the authorization server metadata.",
        check=formats.url,
    )
    jwt_claims_leeway: int = integer(
        "The leeway in seconds for JWT claims validation (exp, nbf). This allows tokens that are slightly expired or not yet valid due to clock skew.",
        default=0,
    )
    keepalive: bool = boolean("Enable HTTP keepalive for requests.", default=True)
    max_request_body_size: int = integer(
        "max allowed body size allowed to be handled as MCP request. 0 means unlimited, but the size of this body will still be limited by Nginx's client_max_body_size.",
        default=1048576,
    )
    metadata_cache_ttl: int = integer(
        "The cache TTL in seconds for discovered authorization server metadata.", default=3600
    )
    metadata_discovery_endpoint: str | None = string(
        "Custom OAuth 2.0 authorization server metadata discovery URL. If provided, the plugin will use this URL directly instead of trying standard well-known discovery paths. The custom endpoint URL should end with either '/.well-known/openid-configuration' or '/.well-known/oauth-authorization-server'.",
        check=formats.url,
    )
    metadata_discovery_retry: int = integer(
        "The number of retry attempts for metadata discovery requests per URL.", default=3
    )
    metadata_endpoint: str | None = string(
        "The path for OAuth 2.0 Protected Resource Metadata. Default to $resource/.well-known/oauth-protected-resource. For example, if the configured resource is https://api.example.com/mcp, the metadata endpoint is /mcp/.well-known/oauth-protected-resource.",
        check=formats.normal_path,
    )
    mtls_introspection_endpoint: str | None = string(
        "The mTLS alias for the introspection endpoint.", check=formats.url
    )
    no_proxy: str | None = string("Comma-separated list of hosts to exclude from proxy.")
    passthrough_credentials: bool = boolean(
        "Keep the credentials used for authentication in the request. If multiple credentials are sent with the same request, the plugin will keep those that were used for successful authentication.",
        default=False,
    )
    resource: str = string("The resource identifier.", required=True, check=formats.resource_identifier)
    scopes_supported: tuple[str, ...] = array(
        "Scopes advertised in the protected resource metadata and in the `scope` parameter of challenges.",
        text(
            description="Recommended scopes that are used in authorization requests to request access to this protected resource."
        ),
        len_min=1,
        check=formats.scope_tokens,
    )
    ssl_verify: bool = boolean("Verify the SSL certificate.", default=True)
    timeout: float = number("Network I/O timeout in milliseconds.", default=10000, check=formats.positive)
    tls_client_auth_cert: str | None = string("PEM-encoded client certificate for mTLS.", check=formats.pem_certificate)
    tls_client_auth_key: str | None = string(
        "PEM-encoded private key for mTLS.", secret=True, check=formats.pem_private_key
    )
    tls_client_auth_ssl_verify: bool = boolean("Verify server certificate in mTLS.", default=True)
    token_exchange: TokenExchange = record(
        TokenExchange,
        "Configuration details about token exchange that should happen before reaching upstream MCP server",
    )
    upstream_headers: tuple[UpstreamHeader, ...] = array(
        "Map token claims to upstream headers using path-based access. Each entry specifies a header name and a path (array of strings) to traverse the token claims. Mutually exclusive with claim_to_header.",
        UpstreamHeader,
    )

    # Extensions beyond Kong 3.14's schema: optional, each default keeps Kong's behaviour.
    scopes_claim: tuple[str, ...] = array(
        "Extension: the claim path of the token's scopes (a space-separated string or an array of strings). With the default and no scope claim, scp is read instead.",
        text(),
        default=["scope"],
        len_min=1,
        extension=True,
    )
    scopes_required: tuple[str, ...] = array(
        "Extension: scopes every request on the route needs. Each entry is a space-separated set that must all be granted; the entries are alternatives.",
        text(check=formats.scope_set),
        len_min=1,
        extension=True,
    )
    mcp_operations: tuple[McpOperation, ...] = array(
        "Extension: scopes per MCP operation (JSON-RPC method and tool, prompt or resource name), needed besides scopes_required; the most specific entry applies.",
        McpOperation,
        len_min=1,
        extension=True,
    )
    scope_hierarchy: tuple[ScopeImplication, ...] = array(
        "Extension: broader scopes and the narrower ones they imply, transitively; a cycle is a configuration error.",
        ScopeImplication,
        len_min=1,
        extension=True,
    )
    mcp_trust_routing_headers: bool = boolean(
        "Extension: classify MCP 2026-07-28 requests by their Mcp-Method and Mcp-Name headers without reading the body; the upstream must reject header/body mismatches.",
        default=False,
        extension=True,
    )
    proof_of_possession_dpop: str = string(
        "Extension: DPoP (RFC 9449) sender-constrained tokens: off, optional (a DPoP-bound token needs a valid proof; bearer tokens still work) or strict (every request must use DPoP).",
        default="off",
        one_of=("off", "optional", "strict"),
        extension=True,
    )
    dpop_use_nonce: bool = boolean(
        "Extension: require a server-issued nonce in DPoP proofs (RFC 9449 §9); nonces are sealed under client_secret or the private client_jwk, so every node accepts them.",
        default=False,
        extension=True,
    )
    dpop_proof_lifetime: int = integer(
        "Extension: how many seconds a DPoP proof's iat may lie in the past (and a server nonce is valid).",
        default=300,
        minimum=1,
        extension=True,
    )
    cluster_cache_strategy: str = string(
        "Extension: off, or redis to share introspection results and exchanged tokens with every Kong node using the same Redis (encrypted under the tokens).",
        default="off",
        one_of=("off", "redis"),
        extension=True,
    )
    cluster_cache_redis: ClusterCacheRedis = record(
        ClusterCacheRedis,
        "Extension: the Redis of cluster_cache_strategy redis (Kong's shared Redis record).",
        extension=True,
    )
    cluster_cache_items: tuple[str, ...] = array(
        "Extension: what the cluster cache shares: introspection results, exchanged tokens (token_exchange). An empty array shares nothing.",
        text(one_of=("introspection", "token_exchange")),
        default=["introspection", "token_exchange"],
        extension=True,
    )


SCHEMA: list[dict[str, Any]] = kong_fields(Config)
"""The plugin's config fields in Kong's schema DSL, as kong-pdk hands them to Kong."""
