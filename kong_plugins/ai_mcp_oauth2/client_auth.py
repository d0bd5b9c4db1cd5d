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
- ``none``: ``client_id`` in the form when configured.

RFC 6749 §2.3: exactly one method per request.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote_plus

import jwt

from .config import Config, _private_jwk_alg

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60


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
        self.method = config.effective_client_auth
        self.client_id = config.client_id or ""
        self.secret = config.client_secret or ""
        self.clock = clock
        self.alg = config.client_alg or "HS256"
        self.jwk: dict[str, object] | None = None
        self.cert: tuple[str, str] | None = None
        self.mtls_url = config.mtls_introspection_endpoint
        self.mtls_verify: bool | None = config.tls_client_auth_ssl_verify
        if self.method == "private_key_jwt" and config.client_jwk:
            self.alg = _private_jwk_alg(config.client_jwk, config.client_alg)
            self.jwk = json.loads(config.client_jwk)
        if self.method in ("tls_client_auth", "self_signed_tls_client_auth"):
            self.cert = _write_key_pair(self, config.tls_client_auth_cert or "", config.tls_client_auth_key or "")

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
        if method in ("tls_client_auth", "self_signed_tls_client_auth"):
            alias = self.mtls_url if mtls_alias else None
            # tls_client_auth_ssl_verify governs the mTLS alias only; other endpoints follow ssl_verify
            return ClientRequest(alias or url, form=[("client_id", self.client_id)], cert=self.cert,
                                 verify=self.mtls_verify if alias else None)
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
        return auth

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


def _write_key_pair(owner: object, cert: str, key: str) -> tuple[str, str]:
    """``requests`` reads client certificates from files: private ones, removed with the instance."""
    directory = tempfile.mkdtemp(prefix="ai-mcp-oauth2-")
    os.chmod(directory, 0o700)
    paths = []
    for name, content in (("client.crt", cert), ("client.key", key)):
        path = os.path.join(directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        paths.append(path)
    weakref.finalize(owner, shutil.rmtree, directory, True)
    return paths[0], paths[1]
