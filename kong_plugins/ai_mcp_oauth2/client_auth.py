"""How the gateway authenticates itself to the authorization server (introspection, exchange).

- ``client_secret_basic`` (RFC 6749 §2.3.1): HTTP Basic, with the client id and secret each
  ``application/x-www-form-urlencoded`` *before* Base64, as the RFC requires (many clients skip
  this and break on ids or secrets with reserved characters).
- ``client_secret_post`` (RFC 6749 §2.3.1): ``client_id`` and ``client_secret`` in the form.
- ``client_secret_jwt`` and ``private_key_jwt`` (RFC 7523 §2.2, OpenID Connect Core §9): a
  ``client_assertion`` JWT with ``iss`` = ``sub`` = client id, ``aud`` = the endpoint, a fresh
  ``jti`` and a short ``exp``; signed with ``client_secret`` (HS*) or the ``client_jwk``.
- ``tls_client_auth`` and ``self_signed_tls_client_auth`` (RFC 8705 §2): the client certificate
  in the TLS handshake, ``client_id`` in the form, sent to ``mtls_introspection_endpoint`` when set.
  The private key never lies on disk: ``requests`` takes the certificate and key as paths, so
  they live in anonymous memory files (Linux ``memfd_create(2)``) named by ``/proc/self/fd/<n>``,
  which ``ssl`` opens afresh (at offset 0) for each new TLS connection. They are closed by
  :meth:`ClientAuth.close` (or when the instance is garbage-collected). Without ``memfd_create``
  the configuration fails closed, naming ``tls_client_auth_key``.
- ``none``: ``client_id`` in the form when configured.

RFC 6749 §2.3: exactly one method per request.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote_plus

import jwt
from jwt.exceptions import PyJWKError, PyJWTError

from .errors import ConfigError
from .jwks import ASYMMETRIC_ALGS, key_algorithms
from .schema import Config

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60
HMAC_ALGS = ("HS256", "HS384", "HS512")
SECRET_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt")
TLS_METHODS = ("tls_client_auth", "self_signed_tls_client_auth")


def auth_method(config: Config) -> str:
    """``client_auth``, or by default (behaviour §6.2) ``client_secret_basic`` with a secret, else ``none``."""
    if config.client_auth:
        return config.client_auth
    return "client_secret_basic" if config.client_secret else "none"


def check_client(config: Config) -> None:
    """Each method needs its credentials (RFC 6749 §2.3, RFC 7523 §2.2, RFC 8705 §2), checked when the
    top-level client is used (introspection, or an exchange that inherits it)."""
    auth = auth_method(config)

    def need(name: str) -> None:
        if not getattr(config, name):
            raise ConfigError(name, f"required when client_auth is {auth}")

    if auth == "none":
        return
    need("client_id")
    if auth in SECRET_METHODS:
        need("client_secret")
    if auth == "client_secret_jwt":
        alg = config.client_alg or "HS256"
        if alg not in HMAC_ALGS:
            raise ConfigError("client_alg", "client_secret_jwt needs an HS256, HS384 or HS512 client_alg")
        # RFC 7518 §3.2: a key of the same size as the hash output (or larger) MUST be used.
        if len((config.client_secret or "").encode()) < int(alg[2:]) // 8:
            raise ConfigError("client_secret", f"must be at least {int(alg[2:]) // 8} bytes for {alg} (RFC 7518 §3.2)")
    if auth == "private_key_jwt":
        need("client_jwk")
    if auth in TLS_METHODS:
        need("tls_client_auth_cert")
        need("tls_client_auth_key")


def check_exchange_client(config: Config) -> None:
    """``token_exchange.client_auth``'s credentials (RFC 6749 §2.3.1), or the top-level client it inherits."""
    exchange = config.token_exchange
    if exchange.client_auth in ("client_secret_basic", "client_secret_post"):
        if not exchange.client_id:
            raise ConfigError("token_exchange.client_id", f"required when client_auth is {exchange.client_auth}")
        if not exchange.client_secret:
            raise ConfigError("token_exchange.client_secret", f"required when client_auth is {exchange.client_auth}")
    if exchange.client_auth == "inherit":
        if not config.client_id:
            raise ConfigError("client_id", "required when token_exchange.client_auth is inherit")
        check_client(config)


def signing_algorithm(jwk: str, client_alg: str | None) -> str:
    """Parse ``client_jwk`` (a JSON string since Kong 3.14.0.7) and return the algorithm to sign with:
    ``client_alg``, else the JWK's ``alg``, else its key type's default (RFC 7518 §3.1, RFC 8037 §3.1)."""
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
        alg = next(iter(key_algorithms(data)), None)
    if alg not in ASYMMETRIC_ALGS:
        raise ConfigError("client_alg", "must be an asymmetric algorithm matching client_jwk")
    try:
        jwt.PyJWK(data, algorithm=alg)
    except (PyJWKError, PyJWTError, ValueError, TypeError, KeyError):  # PyJWT's InvalidKeyError among them
        raise ConfigError("client_jwk", f"is not a usable {alg} key") from None
    return str(alg)


def basic_authorization(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-encode id and secret, then Base64 ``id:secret``."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


@dataclass(frozen=True)
class ClientRequest:
    """What one call to the authorization server needs for client authentication."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    form: list[tuple[str, str]] = field(default_factory=list)
    cert: tuple[str, str] | None = None
    verify: bool | None = None


class ClientAuth:
    """The gateway's client credentials, prepared once per instance.

    The top-level ``client_*`` fields serve introspection and ``token_exchange.client_auth:
    inherit``; :meth:`for_exchange` builds the exchange's own ``client_secret_basic``,
    ``client_secret_post`` or ``none``.
    """

    def __init__(self, config: Config, clock: Callable[[], float]) -> None:
        self.method = auth_method(config)
        self.client_id = config.client_id or ""
        self.secret = config.client_secret or ""
        self.clock = clock
        self.alg = config.client_alg or "HS256"
        self.jwk: dict[str, object] | None = None
        self.cert: tuple[str, str] | None = None
        self.files: MemoryFiles | None = None
        self.mtls_url = config.mtls_introspection_endpoint
        self.mtls_verify: bool | None = config.tls_client_auth_ssl_verify
        if self.method == "private_key_jwt" and config.client_jwk:
            self.alg = signing_algorithm(config.client_jwk, config.client_alg)
            self.jwk = json.loads(config.client_jwk)
        if self.method in TLS_METHODS:
            self.files = MemoryFiles(config.tls_client_auth_cert or "", config.tls_client_auth_key or "")
            self.cert = self.files.paths

    def prepare(self, url: str, mtls_alias: bool = True) -> ClientRequest:
        """Client authentication for a call to ``url`` (the mTLS alias replaces it if allowed)."""
        method = self.method
        if method == "client_secret_basic":
            return ClientRequest(url, {"Authorization": basic_authorization(self.client_id, self.secret)})
        if method == "client_secret_post":
            return ClientRequest(url, form=[("client_id", self.client_id), ("client_secret", self.secret)])
        if method in ("client_secret_jwt", "private_key_jwt"):
            return ClientRequest(url, form=[
                ("client_id", self.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", self._assertion(url)),
            ])  # fmt: skip
        if method in TLS_METHODS:
            alias = self.mtls_url if mtls_alias else None
            # tls_client_auth_ssl_verify governs the mTLS alias only; other endpoints follow ssl_verify
            return ClientRequest(
                alias or url,
                form=[("client_id", self.client_id)],
                cert=self.cert,
                verify=self.mtls_verify if alias else None,
            )
        return ClientRequest(url, form=[("client_id", self.client_id)] if self.client_id else [])

    @classmethod
    def for_exchange(cls, config: Config, clock: Callable[[], float]) -> ClientAuth:
        """``token_exchange.client_auth``: its own credentials, or ``inherit`` the top-level ones."""
        exchange = config.token_exchange
        if exchange.client_auth == "inherit":
            return cls(config, clock)
        auth = cls.__new__(cls)
        auth.method = exchange.client_auth
        auth.client_id = exchange.client_id or ""
        auth.secret = exchange.client_secret or ""
        auth.clock = clock
        auth.alg, auth.jwk, auth.cert, auth.mtls_url, auth.mtls_verify = "HS256", None, None, None, None
        auth.files = None
        return auth

    def close(self) -> None:
        """Close the memory files of the TLS client key; idempotent. Call it only when no request uses
        this object any more: a later TLS connection could not load the key."""
        if self.files is not None:
            self.files.close()

    def _assertion(self, audience: str) -> str:
        now = int(self.clock())
        claims = {
            "iss": self.client_id, "sub": self.client_id, "aud": audience,
            "jti": str(uuid.uuid4()), "iat": now, "exp": now + ASSERTION_LIFETIME,
        }  # fmt: skip
        if self.jwk is not None:
            key = jwt.PyJWK(self.jwk, algorithm=self.alg)
            headers = {"kid": self.jwk["kid"]} if isinstance(self.jwk.get("kid"), str) else None
            return jwt.encode(claims, key.key, algorithm=self.alg, headers=headers)
        return jwt.encode(claims, self.secret.encode(), algorithm=self.alg)


class MemoryFiles:
    """The TLS client certificate and private key in anonymous memory files, never on disk.

    ``paths`` are ``/proc/self/fd/<n>`` of two ``memfd_create(2)`` files: opening such a path opens
    the memory file anew at offset 0, which is what ``ssl``'s ``load_cert_chain`` does for each new
    connection. Nothing is ever written to a file system, so no key survives the process (or a
    SIGTERM, or a config change) and no other process can find it by name.
    """

    def __init__(self, cert: str, key: str) -> None:
        create = getattr(os, "memfd_create", None)
        if create is None:
            raise ConfigError(
                "tls_client_auth_key",
                "cannot be held in memory on this system (no memfd_create), and a private key is never written to disk",
            )
        fds: list[int] = []
        try:
            for name, content in (("ai-mcp-oauth2-client.crt", cert), ("ai-mcp-oauth2-client.key", key)):
                fds.append(create(name, os.MFD_CLOEXEC))
                data = memoryview(content.encode())
                while data:
                    data = data[os.write(fds[-1], data) :]
            paths = tuple(f"/proc/self/fd/{fd}" for fd in fds)
            if not all(os.path.exists(path) for path in paths):
                raise FileNotFoundError("/proc/self/fd")
        except OSError as exc:
            _close(tuple(fds))
            raise ConfigError(
                "tls_client_auth_key",
                f"cannot be held in memory on this system ({type(exc).__name__}), "
                "and a private key is never written to disk",
            ) from None
        self.paths = (paths[0], paths[1])
        self._finalizer = weakref.finalize(self, _close, tuple(fds))

    def close(self) -> None:
        """Close both memory files (their memory is freed); idempotent."""
        self._finalizer()


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
