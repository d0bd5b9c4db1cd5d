"""Client authentication at the introspection and token endpoints (RFC 6749 §2.3, RFC 7523, RFC 8705).

``authenticate(...)`` returns ``(client_id, method)`` or raises ``ClientAuthError``. Rules:

* exactly one of: ``Authorization: Basic``, ``client_secret`` in the form, ``client_assertion`` in the
  form (RFC 6749 §2.3 "MUST NOT use more than one"); several -> 400 ``invalid_request``;
* with none of those, ``client_id`` in the form names the client, whose registered method must then be
  ``none``, ``tls_client_auth`` or ``self_signed_tls_client_auth`` (the latter two need the TLS client
  certificate presented in the handshake to equal the registered one, DER comparison);
* the method used must be the client's registered method;
* ``client_secret_basic``: id and secret are ``application/x-www-form-urlencoded`` before Base64
  (RFC 6749 §2.3.1). Strict: the raw (encoded) parts may only contain ``A-Z a-z 0-9 - . _ ~ * % +``,
  so an id like ``a:b c`` only works when sent as ``a%3Ab+c``;
* JWT assertions: ``client_assertion_type`` = jwt-bearer URN, ``iss`` = ``sub`` = client id, ``aud``
  containing an accepted audience (issuer, the endpoint URL, the token endpoint URL), ``exp`` in the
  future (no leeway), ``nbf``/``iat`` not in the future (60 s leeway), a ``jti`` never seen before for that client.
  ``client_secret_jwt``: HS256/384/512 with the secret; ``private_key_jwt``: asymmetric alg fitting the
  registered ``public_jwk`` (and its ``alg`` if it names one). ``none`` is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from . import keys as K
from .tls import cert_der

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
    "none",
)
_FORM_SAFE = re.compile(r"^[A-Za-z0-9\-._~*%+]*$")
LEEWAY = 60


class ClientAuthError(Exception):
    def __init__(self, description: str, error: str = "invalid_client", status: int = 401):
        super().__init__(description)
        self.error, self.status, self.description = error, status, description


@dataclass
class Client:
    client_id: str
    method: str
    secret: str | None = None
    public_jwk: dict[str, Any] | None = None
    cert_pem: str | None = None
    cert_der: bytes | None = None

    def __post_init__(self) -> None:
        method = self.method
        if method not in METHODS:
            raise ValueError(f"unknown client auth method {method!r}; one of {METHODS}")
        if method in ("client_secret_basic", "client_secret_post", "client_secret_jwt") and not self.secret:
            raise ValueError(f"{method} needs a secret")
        if method == "private_key_jwt" and not self.public_jwk:
            raise ValueError("private_key_jwt needs public_jwk")
        if method in ("tls_client_auth", "self_signed_tls_client_auth") and not self.cert_pem:
            raise ValueError(f"{method} needs cert_pem")
        self.public_jwk = dict(self.public_jwk) if self.public_jwk else None
        if self.cert_pem and self.cert_der is None:
            self.cert_der = cert_der(self.cert_pem)


class ClientRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        self._seen_jti: set[tuple[str, str]] = set()

    def add(self, c: Client) -> Client:
        with self._lock:
            self._clients[c.client_id] = c
        return c

    def get(self, client_id: str) -> Client | None:
        with self._lock:
            return self._clients.get(client_id)

    def all(self) -> list[Client]:
        with self._lock:
            return list(self._clients.values())

    def _claim_jti(self, client_id: str, jti: str) -> bool:
        with self._lock:
            if (client_id, jti) in self._seen_jti:
                return False
            self._seen_jti.add((client_id, jti))
            return True


def _single(form: dict[str, list[str]], name: str) -> str | None:
    vals = form.get(name)
    if not vals:
        return None
    if len(vals) > 1:
        raise ClientAuthError(f"parameter {name} repeated", "invalid_request", 400)
    return vals[0]


def _parse_basic(value: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ClientAuthError("malformed Basic credentials") from None
    if ":" not in raw:
        raise ClientAuthError("Basic credentials without ':'")
    rid, rsecret = raw.split(":", 1)
    if not _FORM_SAFE.match(rid) or not _FORM_SAFE.match(rsecret):
        raise ClientAuthError("Basic credentials not form-encoded before Base64 (RFC 6749 §2.3.1)")
    return unquote_plus(rid), unquote_plus(rsecret)


def authenticate(
    registry: ClientRegistry,
    headers: dict[str, str],
    form: dict[str, list[str]],
    peer_cert_der: bytes | None,
    audiences: set[str],
) -> tuple[str, str]:
    auth = headers.get("authorization", "")
    scheme, _, cred = auth.partition(" ")
    used = []
    if scheme.lower() == "basic":
        used.append("client_secret_basic")
    elif auth:
        raise ClientAuthError(f"unsupported Authorization scheme {scheme!r}")
    if "client_secret" in form:
        used.append("client_secret_post")
    if "client_assertion" in form or "client_assertion_type" in form:
        used.append("jwt")
    if len(used) > 1:
        raise ClientAuthError(f"more than one client authentication method used: {used}", "invalid_request", 400)
    form_id = _single(form, "client_id")

    if used == ["client_secret_basic"]:
        cid, secret = _parse_basic(cred)
        if form_id is not None and form_id != cid:
            raise ClientAuthError("client_id in the form differs from the Basic credentials", "invalid_request", 400)
        c = _lookup(registry, cid, ("client_secret_basic",))
        if secret != c.secret:
            raise ClientAuthError("wrong client secret")
        return cid, "client_secret_basic"

    if used == ["client_secret_post"]:
        posted = _single(form, "client_secret")
        if form_id is None:
            raise ClientAuthError("client_secret without client_id")
        c = _lookup(registry, form_id, ("client_secret_post",))
        if posted != c.secret:
            raise ClientAuthError("wrong client secret")
        return form_id, "client_secret_post"

    if used == ["jwt"]:
        return _assertion(registry, form, form_id, audiences)

    if form_id is None:
        raise ClientAuthError("no client authentication")
    c = _lookup(registry, form_id, ("none", "tls_client_auth", "self_signed_tls_client_auth"))
    if c.method == "none":
        return form_id, "none"
    if peer_cert_der is None:
        raise ClientAuthError("no TLS client certificate presented")
    if peer_cert_der != c.cert_der:
        raise ClientAuthError("TLS client certificate does not match the registered one")
    return form_id, c.method


def _lookup(registry: ClientRegistry, cid: str, allowed: tuple[str, ...]) -> Client:
    c = registry.get(cid)
    if c is None:
        raise ClientAuthError(f"unknown client {cid!r}")
    if c.method not in allowed:
        raise ClientAuthError(f"client {cid!r} is registered for {c.method}, not {'/'.join(allowed)}")
    return c


def _assertion(
    registry: ClientRegistry, form: dict[str, list[str]], form_id: str | None, audiences: set[str]
) -> tuple[str, str]:
    atype = _single(form, "client_assertion_type")
    assertion = _single(form, "client_assertion")
    if atype != JWT_BEARER:
        raise ClientAuthError(f"client_assertion_type must be {JWT_BEARER}")
    if not assertion:
        raise ClientAuthError("client_assertion missing")
    try:
        header, claims, si, sig = K.split(assertion)
    except K.JWSError as e:
        raise ClientAuthError(str(e)) from None
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or iss != sub:
        raise ClientAuthError("assertion iss and sub must both be the client id")
    if form_id is not None and form_id != iss:
        raise ClientAuthError("client_id differs from the assertion issuer")
    c = _lookup(registry, iss, ("client_secret_jwt", "private_key_jwt"))
    alg = header.get("alg")
    if c.method == "client_secret_jwt":
        if alg not in K.HMAC_ALGS:
            raise ClientAuthError(f"client_secret_jwt needs HS256/384/512, got {alg!r}")
        ok = K.verify(alg, si, sig, c.secret)
    else:
        if alg not in K.ASYMMETRIC_ALGS:
            raise ClientAuthError(f"private_key_jwt needs an asymmetric alg, got {alg!r}")
        jwk = c.public_jwk or {}  # add() refuses private_key_jwt without one
        if jwk.get("alg") not in (None, alg):
            raise ClientAuthError(f"key is for {jwk.get('alg')}, assertion uses {alg}")
        try:
            pub = K.key_from_jwk(jwk)
        except Exception as e:  # noqa: BLE001
            raise ClientAuthError(f"registered public_jwk unusable: {e}") from None
        ok = K.alg_fits_key(alg, pub) and K.verify(alg, si, sig, pub)
    if not ok:
        raise ClientAuthError("assertion signature invalid")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(a in audiences for a in auds if isinstance(a, str)):
        raise ClientAuthError(f"assertion aud {aud!r} names neither this endpoint nor the issuer")
    now = time.time()
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp <= now:
        raise ClientAuthError("assertion exp missing or past")
    for name in ("nbf", "iat"):
        v = claims.get(name)
        if v is not None and (not isinstance(v, (int, float)) or v > now + LEEWAY):
            raise ClientAuthError(f"assertion {name} in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise ClientAuthError("assertion jti missing")
    if not registry._claim_jti(c.client_id, jti):
        raise ClientAuthError("assertion jti replayed")
    return c.client_id, c.method
