"""MockAuthorizationServer: state (keys, tokens, clients, faults, records) and the OAuth endpoints."""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any, Literal, overload
from urllib.parse import urlsplit

from . import keys as K
from .clientauth import METHODS as CLIENT_AUTH_METHODS
from .clientauth import Client, ClientAuthError, ClientRegistry, authenticate
from .server import Listener, Request, Response
from .state import ENDPOINTS, FaultTable, Recorded, RecordLog
from .tls import Pki

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TT_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPES = (
    TT_ACCESS,
    "urn:ietf:params:oauth:token-type:refresh_token",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:saml1",
    "urn:ietf:params:oauth:token-type:saml2",
    "urn:ietf:params:oauth:token-type:jwt",
)
_WWW_AUTH = {"WWW-Authenticate": 'Basic realm="mock-as"'}


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str = "", headers: dict[str, Any] | None = None):
        super().__init__(description)
        self.status, self.error, self.description, self.headers = status, error, description, headers or {}

    def response(self) -> Response:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return Response.json(body, self.status, self.headers)


class MockAuthorizationServer:
    dev_endpoints = False  # POST /_mint and /_opaque, GET /_stats; the CLI turns them on

    def __init__(
        self,
        issuer_path: str = "",
        port: int = 0,
        tls: bool = False,
        resource: str = "http://localhost:8000/mcp",
        *,
        host: str = "127.0.0.1",
        mtls_port: int = 0,
        public_base: str | None = None,
        mtls_public_base: str | None = None,
    ):
        if issuer_path and (not issuer_path.startswith("/") or issuer_path.endswith("/")):
            raise ValueError("issuer_path must be '' or start with '/' and not end with '/'")
        self.issuer_path, self.resource, self.tls = issuer_path, resource, tls
        self._host, self._port, self._mtls_port = host, port, mtls_port
        self._public_base = public_base.rstrip("/") if public_base else None
        self._mtls_public_base = mtls_public_base.rstrip("/") if mtls_public_base else None
        self._lock = threading.RLock()
        self._stop_ev = threading.Event()
        self._keys: list[K.Key] = []
        self._seq = 0
        self._opaque: dict[str, dict[str, Any] | None] = {}
        self._revoked: set[str] = set()
        self._clients = ClientRegistry()
        self._faults = FaultTable()
        self._records = RecordLog()
        self._errors: list[str] = []
        self._main: Listener | None = None
        self._mtls: Listener | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        extra_hosts = tuple(
            h for h in {urlsplit(b).hostname for b in (self._public_base, self._mtls_public_base) if b} if h
        )
        self._pki = Pki(extra_hosts)
        # knobs
        self.discovery = {"oauth": True, "openid_inserted": True, "openid_appended": True}
        self.metadata_issuer_override: str | None = None
        self.metadata_extra: dict[str, Any] = {}
        self.jwks_extra: list[dict[str, Any]] = []
        self.client_checks_enabled = True
        self.exchange_expires_in: int | None = 300
        self.exchange_invalid_error = "invalid_grant"
        self.exchange_refuse: str | None = None
        self.exchange_answer_extra: dict[str, Any] = {}
        self.slow_seconds = 2.0
        for alg in K.DEFAULT_ALGS:
            self.add_key(alg)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "MockAuthorizationServer":
        if self._main is not None:
            return self
        self._stop_ev.clear()
        self._faults.restart()
        self._tmp = tempfile.TemporaryDirectory(prefix="mock-as-")
        main_ctx = self._pki.server_context(self._tmp.name, request_client_cert=False) if self.tls else None
        mtls_ctx = self._pki.server_context(self._tmp.name, request_client_cert=True)
        self._mtls_ctx = mtls_ctx
        for c in self._clients.all():
            if c.cert_pem:
                mtls_ctx.load_verify_locations(cadata=c.cert_pem)
        try:
            self._main = Listener(self, "main", self._host, self._port, main_ctx)
            self._mtls = Listener(self, "mtls", self._host, self._mtls_port, mtls_ctx)
        except Exception:
            self.stop()
            raise
        self._main.start()
        self._mtls.start()
        return self

    def stop(self) -> None:
        self._stop_ev.set()
        self._faults.stop()
        for ln in (self._main, self._mtls):
            if ln is not None:
                ln.stop()
        self._main = self._mtls = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> MockAuthorizationServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ URLs
    def _base(self) -> str:
        if self._public_base:
            return self._public_base
        if self._main is None:
            raise RuntimeError("mock authorization server not started")
        return f"{self._main.scheme}://127.0.0.1:{self._main.port}"

    def _mtls_base(self) -> str:
        if self._mtls_public_base:
            return self._mtls_public_base
        if self._mtls is None:
            raise RuntimeError("mock authorization server not started")
        return f"https://127.0.0.1:{self._mtls.port}"

    @property
    def port(self) -> int:
        return self._main.port if self._main else self._port

    @property
    def mtls_port(self) -> int:
        return self._mtls.port if self._mtls else self._mtls_port

    @property
    def issuer(self) -> str:
        return self._base() + self.issuer_path

    def url(self, path: str) -> str:
        return self._base() + (path if path.startswith("/") else "/" + path)

    def mtls_url(self, path: str) -> str:
        return self._mtls_base() + (path if path.startswith("/") else "/" + path)

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/jwks"

    @property
    def introspection_endpoint(self) -> str:
        return self.issuer + "/introspect"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/token"

    @property
    def mtls_introspection_endpoint(self) -> str:
        return self._mtls_base() + self.issuer_path + "/introspect"

    @property
    def mtls_token_endpoint(self) -> str:
        return self._mtls_base() + self.issuer_path + "/token"

    @property
    def ca_pem(self) -> str:
        return self._pki.ca_pem

    @property
    def metadata_urls(self) -> dict[str, Any]:
        b, p = self._base(), self.issuer_path
        return {
            "oauth": f"{b}/.well-known/oauth-authorization-server{p}",
            "openid_inserted": f"{b}/.well-known/openid-configuration{p}",
            "openid_appended": f"{b}{p}/.well-known/openid-configuration",
        }

    def issue_client_cert(self, cn: str = "mcp-client", self_signed: bool = False) -> tuple[str, str]:
        return self._pki.issue_client_cert(cn, self_signed)

    # ------------------------------------------------------------------ keys
    @property
    def keys(self) -> list[K.Key]:
        with self._lock:
            return list(self._keys)

    def add_key(self, alg: str, kid: str | None = None, publish: bool = True, jwk_alg: bool = True) -> K.Key:
        with self._lock:
            if kid is not None and any(k.kid == kid for k in self._keys):
                raise ValueError(f"kid {kid!r} already in use")
            self._seq += 1
            seq = self._seq
        key = K.new_key(alg, kid, publish, jwk_alg, seq)
        with self._lock:
            self._keys.append(key)
        return key

    def remove_key(self, kid: str) -> None:
        with self._lock:
            before = len(self._keys)
            self._keys = [k for k in self._keys if k.kid != kid]
            if len(self._keys) == before:
                raise KeyError(kid)

    def rotate(self, alg: str) -> K.Key:
        new = self.add_key(alg)
        with self._lock:
            for k in self._keys:
                if k.alg == alg and k is not new:
                    k.published = False
        return new

    def key(self, kid: str) -> K.Key:
        with self._lock:
            for k in self._keys:
                if k.kid == kid:
                    return k
        raise KeyError(kid)

    def current_key(self, alg: str) -> K.Key:
        with self._lock:
            cands = [k for k in self._keys if k.alg == alg]
        if not cands:
            raise KeyError(f"no key for {alg}; add one with add_key({alg!r})")
        pub = [k for k in cands if k.published]
        return max(pub or cands, key=lambda k: k.created)

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {
                "keys": [dict(k.public_jwk) for k in self._keys if k.published] + [dict(j) for j in self.jwks_extra]
            }

    # ------------------------------------------------------------------ minting
    def _default_claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": self.resource,
            "sub": "user-1",
            "client_id": "mcp-client",
            "scope": "mcp:tools",
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }

    def _claims(self, claims: dict[str, Any] | None, omit: Iterable[str] = ()) -> dict[str, Any]:
        c = self._default_claims()
        for name in omit:
            c.pop(name, None)
        for k, v in (claims or {}).items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def mint(
        self,
        claims: dict[str, Any] | None = None,
        alg: str = "RS256",
        kid: str | None = None,
        key: K.Key | None = None,
        headers: dict[str, Any] | None = None,
        omit: Iterable[str] = (),
    ) -> str:
        if key is None:
            key = self.key(kid) if kid is not None and any(k.kid == kid for k in self.keys) else self.current_key(alg)
        alg = key.alg
        header = {"alg": alg, "typ": "at+jwt", "kid": kid if kid is not None else key.kid}
        header.update(headers or {})
        return K.compact(header, self._claims(claims, omit), alg, key.private_key)

    def mint_unsigned(self, claims: dict[str, Any] | None = None, header: dict[str, Any] | None = None) -> str:
        h = {"alg": "none", "typ": "at+jwt"}
        h.update(header or {})
        h = {k: v for k, v in h.items() if v is not None}
        return K.encode_segments(h, self._claims(claims)).decode("ascii") + "."

    def mint_hmac(
        self,
        secret: bytes | str,
        claims: dict[str, Any] | None = None,
        alg: str = "HS256",
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        if alg not in K.HMAC_ALGS:
            raise ValueError(f"{alg} is not an HMAC algorithm")
        header = {"alg": alg, "typ": "at+jwt", "kid": kid}
        header.update(headers or {})
        return K.compact(header, self._claims(claims), alg, secret)

    # ------------------------------------------------------------------ opaque tokens
    def issue_opaque(self, claims: dict[str, Any] | None = None, active: bool = True) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._opaque[token] = self._claims(dict({"token_type": "Bearer"}, **(claims or {}))) if active else None
        return token

    def revoke(self, token: str) -> None:
        """Make an opaque token or a JWT minted here introspect as inactive (and fail as a subject token)."""
        with self._lock:
            if token in self._opaque:
                self._opaque[token] = None
            self._revoked.add(token)

    def validate_token(self, token: str) -> dict[str, Any] | None:
        """Claims of an active token issued by this server (opaque, or a JWT signed by a held key), else None."""
        with self._lock:
            if token in self._revoked:
                return None
            if token in self._opaque:
                c = self._opaque[token]
                if c is None:
                    return None
                exp = c.get("exp")
                return dict(c) if not isinstance(exp, (int, float)) or exp > time.time() else None
        try:
            header, claims, si, sig = K.split(token)
        except K.JWSError:
            return None
        alg, kid = header.get("alg"), header.get("kid")
        cands = [k for k in self.keys if k.alg == alg and (kid is None or k.kid == kid)]
        if not isinstance(alg, str) or not any(K.verify(alg, si, sig, k.public_key) for k in cands):
            return None
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= time.time():
            return None
        if claims.get("iss") != self.issuer:
            return None
        return claims

    # ------------------------------------------------------------------ clients, faults, records
    def add_client(
        self,
        client_id: str,
        method: str,
        secret: str | None = None,
        public_jwk: dict[str, Any] | None = None,
        cert_pem: str | None = None,
    ) -> Client:
        c = self._clients.add(Client(client_id, method, secret, public_jwk, cert_pem))
        ctx = getattr(self, "_mtls_ctx", None)
        if cert_pem and ctx is not None and self._mtls is not None:
            ctx.load_verify_locations(cadata=cert_pem)
        return c

    def fault(self, endpoint: str, mode: str | None, count: int | None = None) -> None:
        self._faults.set(endpoint, mode, count)

    def release(self) -> None:
        self._faults.release()

    @property
    def requests(self) -> list[Recorded]:
        return self._records.list()

    def count(self, endpoint: str) -> int:
        return self._records.count(endpoint)

    def reset_records(self) -> None:
        self._records.clear()

    @property
    def errors(self) -> list[str]:
        """Internal errors of the mock itself (should stay empty)."""
        with self._lock:
            return list(self._errors)

    def note_error(self, msg: str) -> None:
        with self._lock:
            self._errors.append(msg)

    # ------------------------------------------------------------------ HTTP dispatch
    def _routes(self) -> dict[str, Any]:
        p = self.issuer_path
        r = {
            f"/.well-known/oauth-authorization-server{p}": ("metadata", "oauth"),
            f"{p}/.well-known/openid-configuration": ("metadata", "openid_appended"),
            f"/.well-known/openid-configuration{p}": ("metadata", "openid_inserted"),
            f"{p}/jwks": ("jwks", None),
            f"{p}/introspect": ("introspection", None),
            f"{p}/token": ("token", None),
            f"{p}/authorize": ("authorize", None),
            "/_mint": ("dev", "mint"),
            "/_opaque": ("dev", "opaque"),
            "/_stats": ("dev", "stats"),
        }
        if not p:  # inserted and appended OpenID forms are the same URL
            r["/.well-known/openid-configuration"] = ("metadata", "openid_any")
        return r

    def hang(self) -> None:
        """Holds a request whose fault is ``hang`` until the fault is released or the mock stops."""
        self._faults.hang()

    def dispatch(self, req: Request) -> Response:
        endpoint, sub = self._routes().get(req.path, ("other", None))
        if endpoint == "dev" and not self.dev_endpoints:
            endpoint, sub = "other", None
        rec = self._records.add(
            Recorded(
                endpoint,
                req.method,
                req.path,
                dict(req.headers),
                {k: list(v) for k, v in req.form.items()},
                None,
                None,
                req.peer_cert_der,
                req.query,
                req.body,
                req.listener.name,
            )
        )
        resp = self._apply_fault(endpoint, rec, req)
        if resp is None:
            try:
                resp = self._handle(endpoint, sub, req, rec)
            except _OAuthError as e:
                rec.error = e.error
                resp = e.response()
        if resp.action is None:
            rec.status = resp.status
        return resp

    def _apply_fault(self, endpoint: str, rec: Recorded, req: Request) -> Response | None:
        mode = self._faults.take(endpoint) if endpoint in ("metadata", "jwks", "introspection", "token") else None
        if mode is None:
            return None
        rec.fault = mode
        if mode == "slow":
            self._stop_ev.wait(self.slow_seconds)
            return None
        if mode in ("500", "503", "404"):
            err = {"500": "server_error", "503": "temporarily_unavailable", "404": "not_found"}[mode]
            return Response.json({"error": err}, int(mode), {"Retry-After": "1"} if mode == "503" else None)
        if mode == "401":
            rec.error = "invalid_client"
            return Response.json({"error": "invalid_client", "error_description": "fault injected"}, 401, _WWW_AUTH)
        if mode == "garbage":
            return Response(200, b"<html><body>definitely not JSON", {"Content-Type": "application/json"})
        if mode == "wrong_json":
            return Response.json(["not", "an", "object"])
        return Response(action=mode)  # hang | drop

    def _handle(self, endpoint: str, sub: str | None, req: Request, rec: Recorded) -> Response:
        if endpoint == "metadata":
            enabled = (
                (self.discovery.get("openid_inserted") or self.discovery.get("openid_appended"))
                if sub == "openid_any"
                else self.discovery.get(sub or "")
            )
            if not enabled:
                raise _OAuthError(404, "not_found", "discovery document disabled")
            self._only(req, "GET", "HEAD")
            return Response.json(self.metadata(), headers={"Cache-Control": "max-age=60"})
        if endpoint == "jwks":
            self._only(req, "GET", "HEAD")
            return Response.json(self.jwks(), headers={"Cache-Control": "max-age=60"})
        if endpoint == "introspection":
            return self._introspect(req, rec)
        if endpoint == "token":
            return self._token(req, rec)
        if endpoint == "dev":
            return self._dev(sub or "", req)
        if endpoint == "authorize":
            raise _OAuthError(400, "unsupported_response_type", "the mock has no interactive authorization")
        raise _OAuthError(404, "not_found", f"no such path {req.path}")

    @staticmethod
    def _only(req: Request, *methods: str) -> None:
        if req.method not in methods:
            raise _OAuthError(405, "invalid_request", f"{req.method} not allowed", {"Allow": ", ".join(methods)})

    def metadata(self) -> dict[str, Any]:
        """The discovery document (same for RFC 8414 and OpenID)."""
        mt = {"introspection_endpoint": self.mtls_introspection_endpoint, "token_endpoint": self.mtls_token_endpoint}
        auth_algs = list(K.HMAC_ALGS) + list(K.ASYMMETRIC_ALGS)
        m = {
            "issuer": self.metadata_issuer_override if self.metadata_issuer_override is not None else self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.jwks_uri,
            "introspection_endpoint": self.introspection_endpoint,
            "scopes_supported": ["openid", "mcp:tools", "mcp:resources", "mcp:prompts"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token", TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": auth_algs,
            "introspection_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
            "introspection_endpoint_auth_signing_alg_values_supported": auth_algs,
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(K.ASYMMETRIC_ALGS),
            "tls_client_certificate_bound_access_tokens": False,
            "mtls_endpoint_aliases": mt,
        }
        m.update(self.metadata_extra)
        return m

    def _form_post(self, req: Request, rec: Recorded) -> None:
        self._only(req, "POST")
        if req.content_type != "application/x-www-form-urlencoded":
            raise _OAuthError(400, "invalid_request", "content-type must be application/x-www-form-urlencoded")
        try:
            audiences = {
                self.issuer,
                self.issuer + "/",
                self.token_endpoint,
                self.mtls_token_endpoint,
                req.listener.name == "mtls" and self.mtls_url(req.path) or self.url(req.path),
            }
            cid, method = authenticate(self._clients, req.headers, req.form, req.peer_cert_der, audiences)
            rec.client_id_authenticated, rec.auth_method_used = cid, method
        except ClientAuthError as e:
            rec.auth_error = e.description
            if self.client_checks_enabled:
                raise _OAuthError(e.status, e.error, e.description, _WWW_AUTH if e.status == 401 else None) from None

    @overload
    @staticmethod
    def _one(req: Request, name: str, required: Literal[True] = True) -> str: ...

    @overload
    @staticmethod
    def _one(req: Request, name: str, required: bool) -> str | None: ...

    @staticmethod
    def _one(req: Request, name: str, required: bool = True) -> str | None:
        v = req.form.get(name)
        if not v:
            if required:
                raise _OAuthError(400, "invalid_request", f"{name} is required")
            return None
        if len(v) > 1:
            raise _OAuthError(400, "invalid_request", f"{name} repeated")
        return v[0]

    def _introspect(self, req: Request, rec: Recorded) -> Response:
        self._form_post(req, rec)
        token = self._one(req, "token")
        self._one(req, "token_type_hint", required=False)
        claims = self.validate_token(token)
        if claims is None:
            return Response.json({"active": False})
        out: dict[str, Any] = {"active": True}
        out.update(claims)
        out.setdefault("token_type", "Bearer")
        out["active"] = True
        return Response.json(out)

    def _token(self, req: Request, rec: Recorded) -> Response:
        self._form_post(req, rec)
        gt = self._one(req, "grant_type")
        if gt != TOKEN_EXCHANGE:
            raise _OAuthError(400, "unsupported_grant_type", f"only {TOKEN_EXCHANGE}")
        if self.exchange_refuse:
            raise _OAuthError(400, self.exchange_refuse, "refused by configuration (exchange_refuse)")
        subject = self._one(req, "subject_token")
        stype = self._one(req, "subject_token_type")
        actor = self._one(req, "actor_token", required=False)
        atype = self._one(req, "actor_token_type", required=False)
        rtype = self._one(req, "requested_token_type", required=False)
        scope = self._one(req, "scope", required=False)
        if (actor is None) != (atype is None):
            raise _OAuthError(400, "invalid_request", "actor_token and actor_token_type go together")
        for name, t in (("subject_token_type", stype), ("actor_token_type", atype), ("requested_token_type", rtype)):
            if t is not None and t not in TOKEN_TYPES:
                raise _OAuthError(400, "invalid_request", f"unknown {name} {t!r}")
        if rtype is not None and rtype not in (TT_ACCESS, "urn:ietf:params:oauth:token-type:jwt"):
            raise _OAuthError(400, "invalid_request", f"cannot issue {rtype}")
        sclaims = self.validate_token(subject)
        if sclaims is None:
            raise _OAuthError(400, self.exchange_invalid_error, "subject_token invalid")
        aclaims = None
        if actor is not None:
            aclaims = self.validate_token(actor)
            if aclaims is None:
                raise _OAuthError(400, self.exchange_invalid_error, "actor_token invalid")
        audiences = req.form.get("audience") or []
        resources = req.form.get("resource") or []
        claims = {
            "sub": sclaims.get("sub"),
            "aud": (audiences or resources or [self.resource])[0],
            "scope": scope if scope is not None else sclaims.get("scope"),
            "client_id": rec.client_id_authenticated or sclaims.get("client_id"),
        }
        if aclaims is not None:
            act = {"sub": aclaims.get("sub")}
            if isinstance(sclaims.get("act"), dict):
                act["act"] = sclaims["act"]
            claims["act"] = act
        if self.exchange_expires_in is not None:
            claims["exp"] = int(time.time()) + int(self.exchange_expires_in)
        token = self.mint(claims, alg="RS256")
        out: dict[str, Any] = {"access_token": token, "issued_token_type": rtype or TT_ACCESS, "token_type": "Bearer"}
        if self.exchange_expires_in is not None:
            out["expires_in"] = self.exchange_expires_in
        if claims["scope"] is not None:
            out["scope"] = claims["scope"]
        out.update(self.exchange_answer_extra)
        out = {k: v for k, v in out.items() if v is not None}
        return Response.json(out, headers={"Pragma": "no-cache"})

    def _dev(self, sub: str, req: Request) -> Response:
        if sub == "stats":  # read-only: the request counts of count(endpoint), for a client over HTTP
            self._only(req, "GET", "HEAD")
            return Response.json({endpoint: self.count(endpoint) for endpoint in ENDPOINTS})
        self._only(req, "POST")
        try:
            claims = json.loads(req.body or b"{}")
        except ValueError:
            raise _OAuthError(400, "invalid_request", "body must be a JSON object of claims") from None
        if not isinstance(claims, dict):
            raise _OAuthError(400, "invalid_request", "body must be a JSON object of claims")
        if sub == "mint":
            alg = dict(p.split("=", 1) for p in req.query.split("&") if "=" in p).get("alg", "RS256")
            try:
                return Response.json({"access_token": self.mint(claims, alg=alg), "token_type": "Bearer"})
            except (KeyError, ValueError) as e:
                raise _OAuthError(400, "invalid_request", str(e)) from None
        return Response.json({"access_token": self.issue_opaque(claims), "token_type": "Bearer"})
