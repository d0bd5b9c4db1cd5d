"""Interoperability tests: the real plugin server behind the Kong stand-in, against a real
OpenID provider nobody here wrote — panva's certified `oidc-provider` (npm), run on loopback by
the small Node app in oidc_provider/server.mjs.

The provider is installed with `npm ci` from oidc_provider/package-lock.json when node_modules is
missing or does not match the lockfile (a fresh CI machine installs from the npm registry).
Node.js and npm are required: without them these tests fail, they are never skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

# The Kong stand-in and the plugin server (fixture start_kong) and the upstream are in tests/conftest.py.
from tests.harness.stack import free_port

#: The exact oidc-provider release these tests run against (pinned in oidc_provider/package.json
#: and package-lock.json; 8.x is the release line that supports Node.js 18/20 LTS).
OIDC_PROVIDER_VERSION = "8.8.1"

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
SERVER = PROVIDER_DIR / "server.mjs"
LOCKFILE = PROVIDER_DIR / "package-lock.json"
STAMP = PROVIDER_DIR / "node_modules" / ".interop-lock.sha256"
NPM_CI_TIMEOUT = 600

# What server.mjs configures (kept in one place for the tests).
RESOURCE = "http://localhost:8000/mcp"
OTHER_RESOURCE = "http://localhost:8000/other"
UPSTREAM_AUDIENCE = "https://upstream-mcp.internal"
SHORT_TTL = 2
SCOPED_RESOURCE_SCOPES = ("mcp:read", "mcp:admin")
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def secret(client_id: str) -> str:
    return f"{client_id}-secret"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"interop tests need {name} on PATH (Node.js 18.12+ with npm) to run oidc-provider "
            f"{OIDC_PROVIDER_VERSION}; install Node.js, these tests are not skipped",
            pytrace=False,
        )
    return path


def _lock_digest() -> str:
    return hashlib.sha256(LOCKFILE.read_bytes()).hexdigest()


def _installed_version() -> str | None:
    manifest = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def node_app() -> str:
    """node, with oidc_provider/node_modules installed exactly from the lockfile."""
    node = _tool("node")
    npm = _tool("npm")
    digest = _lock_digest()
    fresh = STAMP.is_file() and STAMP.read_text().strip() == digest and _installed_version() == OIDC_PROVIDER_VERSION
    if not fresh:
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PROVIDER_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci in {PROVIDER_DIR} did not finish within {NPM_CI_TIMEOUT}s", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"npm ci in {PROVIDER_DIR} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}",
                pytrace=False,
            )
        STAMP.write_text(digest + "\n")
    installed = _installed_version()
    assert installed == OIDC_PROVIDER_VERSION, (
        f"provider: node_modules has oidc-provider {installed}, the tests pin {OIDC_PROVIDER_VERSION}"
    )
    return node


def private_jwks(tag: str) -> dict[str, Any]:
    """A fresh signing key set (RS256 and ES256, private JWKs) for server.mjs --jwks."""
    keys = []
    for alg, private in (
        ("RS256", rsa.generate_private_key(65537, 2048)),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
    ):
        text = RSAAlgorithm.to_jwk(private) if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm.to_jwk(private)
        jwk = {name: value for name, value in json.loads(text).items() if name != "key_ops"}
        keys.append({**jwk, "alg": alg, "use": "sig", "kid": f"{tag}-{alg.lower()}"})
    return {"keys": keys}


class OidcProvider:
    """One `node server.mjs` process; restartable on the same port (same issuer) with new keys.

    ``scoped_resources``: resource servers whose scopes are ``SCOPED_RESOURCE_SCOPES`` (server.mjs
    --scoped-resource), for the per-operation scope tests. ``dpop``: oidc-provider's DPoP feature on
    (server.mjs --dpop), for the DPoP tests."""

    def __init__(
        self,
        node: str,
        workdir: Path,
        port: int | None = None,
        scoped_resources: Sequence[str] = (),
        dpop: bool = False,
    ):
        self.node = node
        self.scoped_resources = tuple(scoped_resources)
        self.dpop = dpop
        self.workdir = workdir
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path = workdir / f"oidc-provider-{self.port}.log"
        self.http = requests.Session()
        self.http.trust_env = False
        self.metadata: dict[str, Any] = {}

    # -- process
    def start(self, jwks: dict[str, Any] | None = None, timeout: float = 20.0) -> OidcProvider:
        assert self.proc is None, "provider already running"
        command = [self.node, str(SERVER), "--port", str(self.port)]
        if jwks is not None:
            path = self.workdir / f"jwks-{time.monotonic_ns()}.json"
            path.write_text(json.dumps(jwks))
            command += ["--jwks", str(path)]
        for resource in self.scoped_resources:
            command += ["--scoped-resource", resource]
        if self.dpop:
            command.append("--dpop")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            command,
            cwd=PROVIDER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_ENV": "test"},
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"provider: node server.mjs exited at start:\n{self.log()}")
            try:
                with self.http.get(self.issuer + "/.well-known/openid-configuration", timeout=2) as response:
                    if response.status_code == 200:
                        self.metadata = response.json()
                        break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"provider: no discovery document within {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        assert self.metadata["issuer"] == self.issuer, f"provider: issuer {self.metadata['issuer']!r}"
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, jwks: dict[str, Any] | None = None) -> OidcProvider:
        self.stop()
        self.http.close()  # no kept-alive connection to the old process
        return self.start(jwks)

    def close(self) -> None:
        self.stop()
        self.http.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def events(self) -> list[dict[str, Any]]:
        """What server.mjs reported on stdout ("interop-event {json}" lines): each authorization
        request (client, scope, resource) and each consent (client, resource, scope granted)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("interop-event ")]

    # -- the provider's own answers (each asserted, so a failure names the provider)
    @property
    def token_endpoint(self) -> str:
        return self.metadata["token_endpoint"]

    @property
    def introspection_endpoint(self) -> str:
        return self.metadata["introspection_endpoint"]

    def token(self, client_id: str, resource: str | None = RESOURCE, scope: str | None = "mcp:tools") -> dict[str, Any]:
        form = {"grant_type": "client_credentials", "resource": resource, "scope": scope}
        return self._token_request(client_id, form, "client credentials")

    def access_token(self, client_id: str, resource: str | None = RESOURCE) -> str:
        return self.token(client_id, resource)["access_token"]

    def exchange(
        self,
        client_id: str,
        subject_token: str,
        actor_token: str | None = None,
        audience: str = UPSTREAM_AUDIENCE,
        expect: int = 200,
    ) -> dict[str, Any]:
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "actor_token": actor_token,
            "actor_token_type": actor_token and ACCESS_TOKEN_TYPE,
            "audience": audience,
            "scope": "mcp:tools",
        }
        return self._token_request(client_id, form, "token exchange", expect)

    def _token_request(
        self, client_id: str, form: dict[str, str | None], what: str, expect: int = 200
    ) -> dict[str, Any]:
        status, body = self.post_token(client_id, form)
        assert status == expect, f"provider: {what} for {client_id} answered {status}, expected {expect}: {body}" + (
            f"\nprovider log:\n{self.log()}" if status >= 500 else ""
        )
        return body

    def post_token(
        self, client_id: str, form: Mapping[str, str | None], client_secret: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """A raw token endpoint request (None values are not sent): status and JSON body."""
        sent = {key: value for key, value in form.items() if value is not None}
        auth = (client_id, client_secret if client_secret is not None else secret(client_id))
        with self.http.post(self.token_endpoint, data=sent, auth=auth, timeout=10) as answer:
            return answer.status_code, answer.json()

    def introspect(self, token: str) -> dict[str, Any]:
        with self.http.post(
            self.introspection_endpoint,
            data={"token": token, "token_type_hint": "access_token"},
            auth=("gateway", secret("gateway")),
            timeout=10,
        ) as answer:
            assert answer.status_code == 200, f"provider: introspection answered {answer.status_code}: {answer.text}"
            return answer.json()

    def revoke(self, token: str, client_id: str) -> None:
        with self.http.post(
            self.metadata["revocation_endpoint"], data={"token": token}, auth=(client_id, secret(client_id)), timeout=10
        ) as answer:
            assert answer.status_code == 200, f"provider: revocation answered {answer.status_code}: {answer.text}"

    def jwks(self) -> jwt.PyJWKSet:
        with self.http.get(self.metadata["jwks_uri"], timeout=10) as answer:
            assert answer.status_code == 200, f"provider: JWKS answered {answer.status_code}"
            return jwt.PyJWKSet.from_dict(answer.json())

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The provider's JWT access token checked with PyJWT against the provider's published keys."""
        header = jwt.get_unverified_header(token)
        assert header.get("typ") == "at+jwt", f"provider: JWT access token typ {header.get('typ')!r}"
        key = self.jwks()[header["kid"]]
        return jwt.decode(
            token,
            key=key,
            algorithms=[header["alg"]],
            audience=audience,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )


StartProvider = Callable[..., OidcProvider]


@pytest.fixture
def start_provider(node_app: str, tmp_path: Path) -> Iterator[StartProvider]:
    """Starts providers of this test's own (for restarts and outages); stops them after the test."""
    started: list[OidcProvider] = []

    def start(jwks: dict[str, Any] | None = None) -> OidcProvider:
        provider = OidcProvider(node_app, tmp_path)
        started.append(provider)
        return provider.start(jwks)

    yield start
    for provider in started:
        provider.close()


@pytest.fixture(scope="module")
def oidc(node_app: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """One provider with keys generated at its start, shared by a module's tests."""
    provider = OidcProvider(node_app, tmp_path_factory.mktemp("oidc"))
    provider.start()
    yield provider
    provider.close()
