"""Test doubles: a scripted HTTP client, a clock, and signing keys with a token minter."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from kong_plugins.ai_mcp_oauth2.http import HttpResponse, OutboundCallFailed

ISSUER = "https://as.example.com"
RESOURCE = "https://mcp.example.com/mcp"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Answer = HttpResponse | Exception | Callable[..., HttpResponse]


def ok(document: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(document).encode())


@dataclass
class FakeHttp:
    """Answers by URL; each URL has a list of answers used in turn (the last one repeats)."""

    routes: dict[str, list[Answer]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # threads may ask at once

    def on(self, url: str, *answers: Answer) -> FakeHttp:
        self.routes[url] = list(answers)
        return self

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        with self.lock:
            self.calls.append((method, url, kwargs))
            answers = self.routes.get(url)
            if not answers:
                return HttpResponse(404, b"not found")
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(method, url, **kwargs)
        return answer

    def get(self, url: str, kind: str = "other") -> HttpResponse:
        return self.request("GET", url)

    def count(self, url: str) -> int:
        return sum(1 for _, u, _ in self.calls if u == url)


DOWN = OutboundCallFailed("ConnectionError")


class Gate:
    """A FakeHttp answer held back until :meth:`open`: keeps a fetch in flight while other
    threads arrive. ``entered`` is set once the fetch has reached the server."""

    def __init__(self, answer: HttpResponse | Exception) -> None:
        self.answer = answer
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        self.entered.set()
        if not self.released.wait(10):
            raise AssertionError("the gate was never opened")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def open(self) -> None:
        self.released.set()


def _waiting(frame: Any) -> bool:
    """Whether a thread's stack is inside threading's ``wait`` (an Event or a Condition)."""
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_filename == threading.__file__:
            return True
        frame = frame.f_back
    return False


def settle(threads: Iterable[threading.Thread], limit: float = 10.0) -> None:
    """Return once every thread has ended or is blocked waiting on an Event or a Condition.

    This is how a test knows that requests have *arrived* (and either answered or joined a
    fetch in flight) without sleeping and hoping; ``limit`` only turns a hang into a failure.
    """
    threads = list(threads)
    deadline = time.monotonic() + limit
    while True:
        frames = sys._current_frames()
        if all(not t.is_alive() or _waiting(frames.get(t.ident or -1)) for t in threads):
            return
        if time.monotonic() > deadline:
            raise AssertionError("threads neither ended nor waited")
        time.sleep(0.001)


class PausingLock:
    """A lock that holds one chosen thread right after its first release of it.

    Caches are read under a lock; the moment after a cache miss and before the thread acts on it
    is where another request's fetch can complete. This makes that moment happen on purpose.
    """

    def __init__(self) -> None:
        self.inner = threading.Lock()
        self.target: threading.Thread | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def hold(self, thread: threading.Thread) -> None:
        self.target = thread

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self.inner.acquire(blocking, timeout)

    def release(self) -> None:
        self.inner.release()
        if threading.current_thread() is self.target:
            self.target = None
            self.paused.set()
            if not self.resume.wait(10):
                raise AssertionError("the paused thread was never resumed")

    def run_late(self, fn: Callable[[], Any]) -> Callable[[Gate, list[threading.Thread]], Any]:
        """Start ``fn`` in a thread held here right after its first look at the cache, and wait
        until it is held (or done). The function returned completes the fetch held by ``gate``
        (its ``leader`` threads), then lets ``fn`` go on, and returns its result (or exception)."""
        late, results = in_threads(1, lambda _: fn(), start=False)
        self.hold(late[0])
        late[0].start()
        settle(late)

        def finish(gate: Gate, leader: list[threading.Thread]) -> Any:
            gate.open()
            join(leader)
            self.resume.set()
            join(late)
            return results[0]

        return finish

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def in_threads(n: int, fn: Callable[[int], Any], start: bool = True) -> tuple[list[threading.Thread], list[Any]]:
    """``n`` threads running ``fn(i)``; each result (or the exception raised) lands in ``results[i]``."""
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    if start:
        for thread in threads:
            thread.start()
    return threads, results


def all_at_once(n: int, fn: Callable[[], Any], release: threading.Event) -> list[Any]:
    """``n`` threads calling ``fn`` while the fake server holds its answer back; ``release`` is
    set once they have all had 0.2 s to arrive. Returns what each thread got."""
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(fn())) for _ in range(n)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    return results


def join(threads: Iterable[threading.Thread]) -> None:
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive(), "a request never finished"


@dataclass
class Key:
    alg: str
    kid: str
    private: Any

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        algo: Any = {"RS": RSAAlgorithm, "PS": RSAAlgorithm, "ES": ECAlgorithm, "Ed": OKPAlgorithm}[self.alg[:2]]
        jwk = algo.to_jwk(self.private.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        jwk.update(extra)
        return {k: v for k, v in jwk.items() if v is not None}

    def mint(
        self,
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        now: float | None = None,
        omit: tuple[str, ...] = (),
    ) -> str:
        now = time.time() if now is None else now
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": RESOURCE,
            "sub": "alice",
            "iat": int(now),
            "exp": int(now) + 300,
            "jti": str(uuid.uuid4()),
            "scope": "mcp:tools",
        }
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
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
