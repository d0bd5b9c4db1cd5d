"""Test doubles: a scripted HTTP client, a clock, and signing keys with a token minter."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from kong_plugins.ai_mcp_oauth2.http import HttpResponse, Unreachable

ISSUER = "https://as.example.com"
RESOURCE = "https://mcp.example.com/mcp"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Answer = HttpResponse | Exception | Callable[..., HttpResponse]


def ok(document: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(document).encode(), "application/json")


@dataclass
class FakeHttp:
    """Answers by URL; each URL has a list of answers used in turn (the last one repeats)."""

    routes: dict[str, list[Answer]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def on(self, url: str, *answers: Answer) -> FakeHttp:
        self.routes[url] = list(answers)
        return self

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        self.calls.append((method, url, kwargs))
        answers = self.routes.get(url)
        if not answers:
            return HttpResponse(404, b"not found", "text/plain")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(method, url, **kwargs)
        return answer

    def get(self, url: str) -> HttpResponse:
        return self.request("GET", url)

    def count(self, url: str) -> int:
        return sum(1 for _, u, _ in self.calls if u == url)


DOWN = Unreachable("ConnectionError")


@dataclass
class Key:
    alg: str
    kid: str
    private: Any

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        algo = {"RS": RSAAlgorithm, "PS": RSAAlgorithm, "ES": ECAlgorithm, "Ed": OKPAlgorithm}[self.alg[:2]]
        jwk = algo.to_jwk(self.private.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        jwk.update(extra)
        return {k: v for k, v in jwk.items() if v is not None}

    def mint(self, claims: dict[str, Any] | None = None, headers: dict[str, Any] | None = None,
             now: float | None = None, omit: tuple[str, ...] = ()) -> str:
        now = time.time() if now is None else now
        body: dict[str, Any] = {"iss": ISSUER, "aud": RESOURCE, "sub": "alice", "iat": int(now),
                                "exp": int(now) + 300, "jti": str(uuid.uuid4()), "scope": "mcp:tools"}
        body.update(claims or {})
        for name in omit:
            body.pop(name, None)
        body = {k: v for k, v in body.items() if v is not None}
        header = {"kid": self.kid, "typ": "at+jwt"}
        header.update(headers or {})
        # PyJWS directly: PyJWT's claim checks would refuse the malformed claims tests need.
        return jwt.api_jws.PyJWS().encode(json.dumps(body).encode(), self.private, algorithm=self.alg, headers=header)


def make_client_cert(common_name: str = "gw") -> tuple[str, str]:
    """A self-signed TLS client certificate and its private key, both PEM (for the TLS client-auth methods)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def make_key(alg: str = "RS256", kid: str | None = None) -> Key:
    if alg.startswith(("RS", "PS")):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(alg)
    return Key(alg, kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private)
