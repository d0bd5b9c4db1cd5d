"""The plugin's configuration as a typed, immutable object, with the checks Kong makes as entity checks.

Kong validates each field against the declared schema (``schema.py``) before the config reaches
the plugin server, but a Python plugin cannot declare Kong's entity-level checks, so the
cross-field rules of behaviour §1 are made here, once per plugin instance:

- ``claim_to_header`` and ``upstream_headers`` are mutually exclusive;
- ``token_exchange.enabled`` needs ``passthrough_credentials``;
- an actor-token source needs its value; each ``client_auth`` needs its credentials;
- PEM and JWK fields must parse; URLs must be absolute; header names must be safe (behaviour §8).

A problem raises :class:`~.errors.ConfigError` naming the field (never its value, which may be a
secret). Kong leaves a record the user omitted as ``null``: a null record means its defaults.
Fields Kong injects (``__plugin_id``, ``route_id``…) are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .schema import SCHEMA

WELL_KNOWN_PRM = "/.well-known/oauth-protected-resource"


def _one_of(*path: str) -> tuple[str, ...]:
    """The ``one_of`` values the schema declares for a field, so the two never drift apart."""
    fields = SCHEMA
    definition: dict[str, Any] = {}
    for name in path:
        definition = next(entry[name] for entry in fields if name in entry)
        fields = definition.get("fields", [])
    return tuple((definition.get("elements") or definition)["one_of"])


CLIENT_AUTH_METHODS = _one_of("client_auth")
EXCHANGE_CLIENT_AUTH = _one_of("token_exchange", "client_auth")
ACTOR_SOURCES = _one_of("token_exchange", "request", "actor_token_source")
CONSUMER_BY = _one_of("consumer_by")
HMAC_ALGS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGS = (
    "ES256", "ES384", "ES512", "EdDSA",
    "PS256", "PS384", "PS512", "RS256", "RS384", "RS512",
)  # fmt: skip

# RFC 9110 §5.6.2 token: the only valid header field names.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Behaviour §8: headers a claim may never set.
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "authorization",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
# RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
# An absolute path as Kong's normalisation leaves it (RFC 3986 pchar, no empty or dot segments).
_NORMAL_PATH = re.compile(r"^(/(?!\.\.?(?:/|$))[A-Za-z0-9\-._~!$&'()*+,;=:@%]+)*/?$")


@dataclass(frozen=True, slots=True)
class HeaderMapping:
    """One claim forwarded as an upstream header: ``path`` walks the claims (behaviour §8)."""

    header: str
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenExchange:
    """``token_exchange`` (RFC 8693), its defaults filled in when Kong passed ``null`` records."""

    enabled: bool
    token_endpoint: str | None
    client_auth: str
    client_id: str | None
    client_secret: str | None = field(repr=False)
    cache_enabled: bool
    cache_ttl: int
    subject_token_type: str
    requested_token_type: str
    actor_token_source: str
    actor_token_header: str | None
    actor_token: str | None = field(repr=False)
    actor_token_type: str
    audience: tuple[str, ...]
    resource: str | None
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Config:
    """One plugin instance's configuration, checked and frozen."""

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...]
    metadata_endpoint: str | None
    metadata_discovery_endpoint: str | None
    metadata_discovery_retry: int
    metadata_cache_ttl: int
    insecure_relaxed_audience_validation: bool
    max_request_body_size: int
    introspection_endpoint: str | None
    mtls_introspection_endpoint: str | None
    cache_introspection: bool
    introspection_format: str | None
    client_id: str | None
    client_secret: str | None = field(repr=False)
    client_auth: str | None
    client_alg: str | None
    client_jwk: str | None = field(repr=False)
    args: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    tls_client_auth_cert: str | None
    tls_client_auth_key: str | None = field(repr=False)
    tls_client_auth_ssl_verify: bool
    jwks_endpoint: str | None
    jwks_cache_ttl: int
    jwt_claims_leeway: int
    ssl_verify: bool
    timeout_ms: float
    keepalive: bool
    http_version: float
    http_proxy: str | None
    http_proxy_authorization: str | None = field(repr=False)
    https_proxy: str | None
    https_proxy_authorization: str | None = field(repr=False)
    no_proxy: str | None
    claim_headers: tuple[HeaderMapping, ...]
    consumer_claim: tuple[str, ...]
    consumer_by: tuple[str, ...]
    consumer_optional: bool
    consumer_groups_claim: tuple[str, ...]
    consumer_groups_optional: bool
    credential_claim: tuple[str, ...]
    passthrough_credentials: bool
    token_exchange: TokenExchange
    # Derived once: where the protected resource metadata is served (behaviour §3).
    metadata_path: str
    metadata_paths: frozenset[str]
    warnings: tuple[str, ...] = ()

    @property
    def effective_client_auth(self) -> str:
        """``client_auth`` with behaviour §6's default: basic when a secret is set, else none."""
        if self.client_auth:
            return self.client_auth
        return "client_secret_basic" if self.client_secret else "none"


class _Reader:
    """Typed access to one (possibly null) record of the raw config, naming fields in errors."""

    def __init__(self, raw: Any, prefix: str = "") -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(prefix.rstrip(".") or "config", "expected a record")
        self.raw = raw
        self.prefix = prefix

    def name(self, key: str) -> str:
        return self.prefix + key

    def value(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key)
        return default if value is None else value

    def string(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.value(key, default)
        if value is None:
            if required:
                raise ConfigError(self.name(key), "required field missing")
            return None
        if not isinstance(value, str):
            raise ConfigError(self.name(key), "expected a string")
        if required and value == "":
            raise ConfigError(self.name(key), "must not be empty")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.name(key), "expected a boolean")
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.value(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.name(key), "expected an integer")
        if value < minimum:
            raise ConfigError(self.name(key), f"must be at least {minimum}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.value(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.name(key), "expected a number")
        return float(value)

    def strings(self, key: str, default: tuple[str, ...] = (), non_empty_items: bool = True) -> tuple[str, ...]:
        value = self.value(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.name(key), "expected an array of strings")
        if non_empty_items and any(v == "" for v in value):
            raise ConfigError(self.name(key), "must not contain empty strings")
        return tuple(value)

    def string_map(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self.value(key)
        if value is None or value == []:  # Kong encodes an empty Lua table as an array
            return ()
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(self.name(key), "expected a map of strings to strings")
        return tuple(value.items())

    def one_of(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.string(key, default)
        if value is not None and value not in allowed:
            raise ConfigError(self.name(key), "expected one of: " + ", ".join(allowed))
        return value

    def record(self, key: str) -> _Reader:
        return _Reader(self.raw.get(key), self.prefix + key + ".")


def _absolute_url(name: str, value: str | None, allow_query: bool = True) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        hostname, _port = parts.hostname, parts.port  # .port raises for a bad port
    except ValueError:
        raise ConfigError(name, "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(name, "must be an absolute http or https URL")
    if parts.fragment or "#" in value:
        raise ConfigError(name, "must not contain a fragment")
    if not allow_query and parts.query:
        raise ConfigError(name, "must not contain a query")
    if any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in value) or '"' in value or "\\" in value:
        raise ConfigError(name, "must not contain spaces, quotes, backslashes or control characters")
    return value


def header_name(name: str, value: str) -> str:
    """Check a configured header name (behaviour §8) and return it as given."""
    if not _TOKEN.match(value):
        raise ConfigError(name, "must be a valid HTTP header name")
    if value.lower() in FORBIDDEN_HEADERS:
        raise ConfigError(name, f"must not be {value}: the gateway controls that header")
    return value


def _claim_headers(cfg: _Reader) -> tuple[HeaderMapping, ...]:
    claim_to_header = cfg.value("claim_to_header")
    upstream_headers = cfg.value("upstream_headers")
    if claim_to_header is not None and upstream_headers is not None:
        raise ConfigError("claim_to_header", "claim_to_header and upstream_headers are mutually exclusive")
    mappings: list[HeaderMapping] = []
    if claim_to_header is not None:
        if not isinstance(claim_to_header, list):
            raise ConfigError("claim_to_header", "expected an array")
        for i, item in enumerate(claim_to_header):
            entry = _Reader(item, f"claim_to_header[{i + 1}].")
            claim = entry.string("claim", required=True)
            header = header_name(entry.name("header"), entry.string("header", required=True) or "")
            mappings.append(HeaderMapping(header, (claim or "",)))
    elif upstream_headers is not None:
        if not isinstance(upstream_headers, list):
            raise ConfigError("upstream_headers", "expected an array")
        for i, item in enumerate(upstream_headers):
            entry = _Reader(item, f"upstream_headers[{i + 1}].")
            header = header_name(entry.name("header"), entry.string("header", required=True) or "")
            path = entry.strings("path")
            if not path:
                raise ConfigError(entry.name("path"), "must name at least one claim")
            mappings.append(HeaderMapping(header, path))
    seen: set[str] = set()
    field_name = "claim_to_header" if claim_to_header is not None else "upstream_headers"
    for mapping in mappings:
        if mapping.header.lower() in seen:
            raise ConfigError(field_name, f"header {mapping.header} is mapped more than once")
        seen.add(mapping.header.lower())
    return tuple(mappings)


def _token_exchange(cfg: _Reader, passthrough: bool) -> TokenExchange:
    te = cfg.record("token_exchange")
    cache = te.record("cache")
    request = te.record("request")
    enabled = te.boolean("enabled", False)
    token_endpoint = _absolute_url(te.name("token_endpoint"), te.string("token_endpoint"))
    exchange = TokenExchange(
        enabled=enabled,
        token_endpoint=token_endpoint,
        client_auth=te.one_of("client_auth", EXCHANGE_CLIENT_AUTH, "client_secret_basic") or "",
        client_id=te.string("client_id"),
        client_secret=te.string("client_secret"),
        cache_enabled=cache.boolean("enabled", True),
        cache_ttl=cache.integer("ttl", 3600),
        subject_token_type=request.string("subject_token_type", "urn:ietf:params:oauth:token-type:access_token") or "",
        requested_token_type=request.string("requested_token_type", "urn:ietf:params:oauth:token-type:access_token")
        or "",
        actor_token_source=request.one_of("actor_token_source", ACTOR_SOURCES, "none") or "none",
        actor_token_header=request.string("actor_token_header"),
        actor_token=request.string("actor_token"),
        actor_token_type=request.string("actor_token_type", "urn:ietf:params:oauth:token-type:access_token") or "",
        audience=request.strings("audience"),
        resource=_absolute_url(request.name("resource"), request.string("resource")),
        scopes=request.strings("scopes"),
    )
    if exchange.actor_token_header is not None:
        header_name(request.name("actor_token_header"), exchange.actor_token_header)
    for scope in exchange.scopes:
        if not _SCOPE_TOKEN.match(scope):
            raise ConfigError(request.name("scopes"), "each scope must be an RFC 6749 scope-token")
    if not enabled:
        return exchange
    if token_endpoint is None:
        raise ConfigError(te.name("token_endpoint"), "required field missing")
    if not passthrough:
        raise ConfigError("passthrough_credentials", "token_exchange.enabled requires passthrough_credentials: true")
    if exchange.actor_token_source == "header" and not exchange.actor_token_header:
        raise ConfigError(request.name("actor_token_header"), "required when actor_token_source is header")
    if exchange.actor_token_source == "config" and not exchange.actor_token:
        raise ConfigError(request.name("actor_token"), "required when actor_token_source is config")
    if exchange.client_auth in ("client_secret_basic", "client_secret_post"):
        if not exchange.client_id:
            raise ConfigError(te.name("client_id"), f"required when client_auth is {exchange.client_auth}")
        if not exchange.client_secret:
            raise ConfigError(te.name("client_secret"), f"required when client_auth is {exchange.client_auth}")
    if exchange.client_auth == "inherit" and not cfg.string("client_id"):
        raise ConfigError("client_id", "required when token_exchange.client_auth is inherit")
    return exchange


def _check_pem_and_jwk(cfg: _Reader) -> None:
    """PEM and JWK fields must parse whenever they are set (behaviour §1)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = cfg.string("tls_client_auth_cert")
    if cert is not None:
        try:
            x509.load_pem_x509_certificate(cert.encode())
        except ValueError:
            raise ConfigError("tls_client_auth_cert", "is not a PEM-encoded X.509 certificate") from None
    key = cfg.string("tls_client_auth_key")
    if key is not None:
        try:
            serialization.load_pem_private_key(key.encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigError("tls_client_auth_key", "is not an unencrypted PEM-encoded private key") from None
    jwk = cfg.string("client_jwk")
    if jwk is not None:
        _private_jwk_alg(jwk, cfg.string("client_alg"))


def _private_jwk_alg(jwk: str, client_alg: str | None) -> str:
    """Parse ``client_jwk`` (a JSON string since Kong 3.14.0.7) and return the algorithm to sign with."""
    import jwt
    from jwt.exceptions import PyJWKError

    try:
        data = json.loads(jwk)
    except ValueError:
        raise ConfigError("client_jwk", "is not a JSON-encoded JWK") from None
    if not isinstance(data, dict):
        raise ConfigError("client_jwk", "is not a JSON-encoded JWK")
    if "d" not in data:
        raise ConfigError("client_jwk", "must be a private key (no 'd' member)")
    alg = client_alg or data.get("alg")
    if alg is None:
        alg = {"RSA": "RS256", "OKP": "EdDSA"}.get(data.get("kty", ""))
        if data.get("kty") == "EC":
            alg = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(data.get("crv", ""))
    if alg not in ASYMMETRIC_ALGS:
        raise ConfigError("client_alg", "must be an asymmetric algorithm matching client_jwk")
    try:
        jwt.PyJWK(data, algorithm=alg)
    except (PyJWKError, ValueError, TypeError, KeyError):
        raise ConfigError("client_jwk", f"is not a usable {alg} key") from None
    return alg


def _check_introspection_client(cfg: _Reader, client_auth: str) -> None:
    """Each ``client_auth`` needs its credentials (RFC 6749 §2.3, RFC 7523 §2.2, RFC 8705 §2)."""

    def need(key: str) -> None:
        if not cfg.string(key):
            raise ConfigError(key, f"required when client_auth is {client_auth}")

    if client_auth == "none":
        return
    need("client_id")
    if client_auth in ("client_secret_basic", "client_secret_post", "client_secret_jwt"):
        need("client_secret")
    if client_auth == "client_secret_jwt":
        alg = cfg.string("client_alg") or "HS256"
        if alg not in HMAC_ALGS:
            raise ConfigError("client_alg", "client_secret_jwt needs an HS256, HS384 or HS512 client_alg")
        # RFC 7518 §3.2: a key of the same size as the hash output (or larger) MUST be used.
        if len((cfg.string("client_secret") or "").encode()) < int(alg[2:]) // 8:
            raise ConfigError("client_secret", f"must be at least {int(alg[2:]) // 8} bytes for {alg} (RFC 7518 §3.2)")
    if client_auth == "private_key_jwt":
        need("client_jwk")
    if client_auth in ("tls_client_auth", "self_signed_tls_client_auth"):
        need("tls_client_auth_cert")
        need("tls_client_auth_key")


def _metadata_paths(resource: str, metadata_endpoint: str | None) -> tuple[str, frozenset[str]]:
    """Behaviour §3: Kong's suffixed default (or ``metadata_endpoint``) plus RFC 9728 §3.1's inserted form."""
    resource_path = urlsplit(resource).path
    if resource_path in ("", "/"):
        inserted = WELL_KNOWN_PRM  # RFC 9728 §3.1: a terminating slash after the host is removed
        suffixed = WELL_KNOWN_PRM
    else:
        inserted = WELL_KNOWN_PRM + resource_path
        suffixed = resource_path.rstrip("/") + WELL_KNOWN_PRM
    primary = metadata_endpoint or suffixed
    return primary, frozenset({primary, inserted})


def parse_config(raw: Any) -> Config:
    """Turn the config Kong passes to ``Plugin(config)`` into a :class:`Config`, or raise ConfigError."""
    cfg = _Reader(raw)
    resource = _absolute_url("resource", cfg.string("resource", required=True), allow_query=False) or ""
    if not _NORMAL_PATH.match(urlsplit(resource).path or "/"):
        raise ConfigError("resource", "its path must be normalised (no empty, '.' or '..' segments)")
    servers = cfg.strings("authorization_servers")
    if not servers:
        raise ConfigError("authorization_servers", "required field missing")
    for i, server in enumerate(servers):
        _absolute_url(f"authorization_servers[{i + 1}]", server, allow_query=False)
    scopes = cfg.strings("scopes_supported")
    for scope in scopes:
        if not _SCOPE_TOKEN.match(scope):
            raise ConfigError("scopes_supported", "each scope must be an RFC 6749 scope-token")
    metadata_endpoint = cfg.string("metadata_endpoint")
    if metadata_endpoint is not None and (
        not metadata_endpoint.startswith("/") or not _NORMAL_PATH.match(metadata_endpoint)
    ):
        raise ConfigError(
            "metadata_endpoint",
            "must be an absolute, normalised path such as /.well-known/oauth-protected-resource/mcp",
        )
    metadata_path, metadata_paths = _metadata_paths(resource, metadata_endpoint)

    introspection_endpoint = _absolute_url("introspection_endpoint", cfg.string("introspection_endpoint"))
    client_auth = cfg.one_of("client_auth", CLIENT_AUTH_METHODS)
    client_alg = cfg.one_of("client_alg", HMAC_ALGS + ASYMMETRIC_ALGS)
    _check_pem_and_jwk(cfg)
    http_version = cfg.number("http_version", 1.1)
    if http_version not in (1.0, 1.1):
        raise ConfigError("http_version", "only HTTP 1.0 and 1.1 are supported")
    timeout = cfg.number("timeout", 10000)
    if timeout <= 0:
        raise ConfigError("timeout", "must be greater than 0")
    passthrough = cfg.boolean("passthrough_credentials", False)
    consumer_by = cfg.strings("consumer_by", ("custom_id", "username"))
    for value in consumer_by:
        if value not in CONSUMER_BY:
            raise ConfigError("consumer_by", "expected one of: " + ", ".join(CONSUMER_BY))

    config = Config(
        resource=resource,
        authorization_servers=servers,
        scopes_supported=scopes,
        metadata_endpoint=metadata_endpoint,
        metadata_discovery_endpoint=_absolute_url(
            "metadata_discovery_endpoint", cfg.string("metadata_discovery_endpoint")
        ),
        metadata_discovery_retry=cfg.integer("metadata_discovery_retry", 3),
        metadata_cache_ttl=cfg.integer("metadata_cache_ttl", 3600),
        insecure_relaxed_audience_validation=cfg.boolean("insecure_relaxed_audience_validation", False),
        max_request_body_size=cfg.integer("max_request_body_size", 1048576),
        introspection_endpoint=introspection_endpoint,
        mtls_introspection_endpoint=_absolute_url(
            "mtls_introspection_endpoint", cfg.string("mtls_introspection_endpoint")
        ),
        cache_introspection=cfg.boolean("cache_introspection", True),
        introspection_format=cfg.one_of("introspection_format", ("base64", "base64url", "string")),
        client_id=cfg.string("client_id"),
        client_secret=cfg.string("client_secret"),
        client_auth=client_auth,
        client_alg=client_alg,
        client_jwk=cfg.string("client_jwk"),
        args=cfg.string_map("args"),
        headers=cfg.string_map("headers"),
        tls_client_auth_cert=cfg.string("tls_client_auth_cert"),
        tls_client_auth_key=cfg.string("tls_client_auth_key"),
        tls_client_auth_ssl_verify=cfg.boolean("tls_client_auth_ssl_verify", True),
        jwks_endpoint=_absolute_url("jwks_endpoint", cfg.string("jwks_endpoint")),
        jwks_cache_ttl=cfg.integer("jwks_cache_ttl", 3600),
        jwt_claims_leeway=cfg.integer("jwt_claims_leeway", 0),
        ssl_verify=cfg.boolean("ssl_verify", True),
        timeout_ms=timeout,
        keepalive=cfg.boolean("keepalive", True),
        http_version=http_version,
        http_proxy=_absolute_url("http_proxy", cfg.string("http_proxy")),
        http_proxy_authorization=cfg.string("http_proxy_authorization"),
        https_proxy=_absolute_url("https_proxy", cfg.string("https_proxy")),
        https_proxy_authorization=cfg.string("https_proxy_authorization"),
        no_proxy=cfg.string("no_proxy"),
        claim_headers=_claim_headers(cfg),
        consumer_claim=cfg.strings("consumer_claim"),
        consumer_by=consumer_by,
        consumer_optional=cfg.boolean("consumer_optional", False),
        consumer_groups_claim=cfg.strings("consumer_groups_claim"),
        consumer_groups_optional=cfg.boolean("consumer_groups_optional", False),
        credential_claim=cfg.strings("credential_claim", ("sub",)),
        passthrough_credentials=passthrough,
        token_exchange=_token_exchange(cfg, passthrough),
        metadata_path=metadata_path,
        metadata_paths=metadata_paths,
    )
    for name, _ in config.headers:  # extra headers of introspection requests: any valid name
        if not _TOKEN.match(name):
            raise ConfigError("headers", f"{name!r} is not a valid HTTP header name")
    if introspection_endpoint is not None or (
        config.token_exchange.enabled and config.token_exchange.client_auth == "inherit"
    ):
        _check_introspection_client(cfg, config.effective_client_auth)
    if config.consumer_groups_claim and not config.consumer_groups_optional:
        raise ConfigError(
            "consumer_groups_claim",
            "the Kong PDK offers no consumer-group lookup, so groups from a claim cannot be mapped; "
            "set consumer_groups_optional: true to accept requests without them",
        )
    warnings: list[str] = []
    if config.consumer_groups_claim:
        warnings.append(
            "consumer_groups_claim: ignored, the Kong PDK offers no consumer-group lookup "
            "(a mapped consumer still gets its own groups from Kong)"
        )
    if config.consumer_claim and "custom_id" in config.consumer_by:
        warnings.append("consumer_by: the Kong PDK offers no lookup by custom_id; that choice is skipped")
    if "offline_access" in scopes:
        warnings.append("scopes_supported: MCP authorization advises against advertising offline_access")
    if warnings:
        config = _replace_warnings(config, tuple(warnings))
    return config


def _replace_warnings(config: Config, warnings: tuple[str, ...]) -> Config:
    from dataclasses import replace

    return replace(config, warnings=warnings)
