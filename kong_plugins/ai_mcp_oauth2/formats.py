"""The formats a configuration value must have that Kong's schema cannot say, each a standard's rule.

``schema.py`` names the format of each field it applies to; :func:`~.config.parse_config` calls it
with the field's name and value (never ``None``). A value out of format raises
:class:`~.errors.ConfigError` naming the field; it never repeats a URL or a secret, only a header name.

- URLs (RFC 3986 §4.3): absolute ``http``/``https`` with a host, no fragment, nothing a header or a
  log line could not carry; an issuer identifier (RFC 8414 §2) and the resource (RFC 9728 §1.2)
  also have no query, and the resource's path is as Kong's normalisation leaves it (behaviour §1.3).
- Header names (RFC 9110 §5.6.2 ``token``); the headers a claim may never set (behaviour §8.3).
- Scopes (RFC 6749 §3.3 ``scope-token``).
- PEM (RFC 7468) certificates and unencrypted private keys, which must parse.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from .errors import ConfigError

# RFC 9110 §5.6.2 token: the only valid header field names.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Behaviour §8.3: headers a claim may never set.
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
HTTP_VERSIONS = (1.0, 1.1)


def url(name: str, value: str, allow_query: bool = True) -> None:
    """An absolute ``http`` or ``https`` URL with a host and no fragment."""
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


def issuer(name: str, value: str) -> None:
    """An issuer identifier (RFC 8414 §2): a URL without query or fragment."""
    url(name, value, allow_query=False)


def resource_identifier(name: str, value: str) -> None:
    """The protected resource (RFC 9728 §1.2): no query or fragment, a normalised path."""
    url(name, value, allow_query=False)
    if not _NORMAL_PATH.match(urlsplit(value).path or "/"):
        raise ConfigError(name, "its path must be normalised (no empty, '.' or '..' segments)")


def normal_path(name: str, value: str) -> None:
    """An absolute, normalised path (where Kong can route a request)."""
    if not value.startswith("/") or not _NORMAL_PATH.match(value):
        raise ConfigError(
            name, "must be an absolute, normalised path such as /.well-known/oauth-protected-resource/mcp"
        )


def header_name(name: str, value: str) -> None:
    """A header the gateway may set upstream: a valid name, not one the gateway controls (behaviour §8.3)."""
    if not _TOKEN.match(value):
        raise ConfigError(name, "must be a valid HTTP header name")
    if value.lower() in FORBIDDEN_HEADERS:
        raise ConfigError(name, f"must not be {value}: the gateway controls that header")


def header_names(name: str, value: Sequence[tuple[str, str]]) -> None:
    """Headers of requests to the authorization server: any valid names (``Authorization`` too)."""
    for key, _ in value:
        if not _TOKEN.match(key):
            raise ConfigError(name, f"{key!r} is not a valid HTTP header name")


def scope_tokens(name: str, value: Sequence[str]) -> None:
    """Each scope an RFC 6749 §3.3 ``scope-token``."""
    if not all(_SCOPE_TOKEN.match(scope) for scope in value):
        raise ConfigError(name, "each scope must be an RFC 6749 scope-token")


def scope_token(name: str, value: str) -> None:
    """One RFC 6749 §3.3 ``scope-token``."""
    if not _SCOPE_TOKEN.match(value):
        raise ConfigError(name, "must be an RFC 6749 scope-token")


def scope_set(name: str, value: str) -> None:
    """Scopes that must all be granted, separated by single spaces (Kong openid-connect's ``scopes_required``)."""
    if not all(_SCOPE_TOKEN.match(scope) for scope in value.split(" ")):
        raise ConfigError(name, "must be RFC 6749 scope-tokens separated by single spaces")


def http_version(name: str, value: float) -> None:
    """The HTTP versions the outbound client speaks."""
    if value not in HTTP_VERSIONS:
        raise ConfigError(name, "only HTTP 1.0 and 1.1 are supported")


def positive(name: str, value: float) -> None:
    """A number greater than zero."""
    if value <= 0:
        raise ConfigError(name, "must be greater than 0")


def pem_certificate(name: str, value: str) -> None:
    """A PEM-encoded X.509 certificate."""
    from cryptography import x509

    try:
        x509.load_pem_x509_certificate(value.encode())
    except ValueError:
        raise ConfigError(name, "is not a PEM-encoded X.509 certificate") from None


def pem_private_key(name: str, value: str) -> None:
    """An unencrypted PEM-encoded private key."""
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_private_key(value.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(name, "is not an unencrypted PEM-encoded private key") from None
