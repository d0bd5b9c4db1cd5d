"""Outbound HTTP to the authorization server (behaviour §7).

One pooled ``requests`` session per plugin instance, configured by the plugin's config alone:

- ``timeout`` (ms), ``ssl_verify``, ``keepalive``; redirects are never followed.
- Certificates are verified against the operating system's CA bundle when one is found (as Kong
  does by default, ``lua_ssl_trusted_certificate = system``), so a private CA added to the system
  store is trusted; otherwise against ``certifi``'s bundle, ``requests``' default.
- ``http_proxy``/``https_proxy`` with their ``*_authorization`` header values, and ``no_proxy``.
- The process environment never changes where or how the plugin connects: ``trust_env`` is off,
  so ``HTTP(S)_PROXY``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` and ``.netrc`` are ignored
  (with ``requests``, an environment CA bundle silently re-enables verification that
  ``ssl_verify: false`` turned off, and environment proxies silently apply).
- Response bodies are read up to :data:`MAX_BODY` bytes; a larger answer is a failure.

Every failure of the exchange with the server (connection, timeout, TLS, an oversized or
non-JSON body) is raised as :class:`OutboundCallFailed`; each caller turns it into its refusal,
a 503 (:class:`~.errors.Unavailable`).

**Time budget.** Every outbound call ends by the current request's deadline (``budget.py``),
whole, not per socket operation (``timeout`` in ``requests`` limits each connect and each read,
so an answer sent a byte at a time never times out):

- name resolution waits at most what is left (:func:`resolve`: a lookup runs in a small pool of
  its own, cooperative in gevent mode), and an IP literal is not looked up;
- connecting tries the addresses in turn, each for at most ``timeout`` and all of them together
  for at most what is left (urllib3 gives each address the full ``timeout``);
- at the deadline, a watchdog shuts down the sockets the call uses, which ends a TLS handshake,
  a request being sent, headers or a body being dripped in, in thread and gevent mode alike;
- a spent budget makes no call at all.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from . import metrics
from .budget import remaining
from .schema import Config

MAX_BODY = 1024 * 1024
log = logging.getLogger("ai_mcp_oauth2")
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu (Kong's images), Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Amazon Linux
    "/etc/ssl/ca-bundle.pem",  # SUSE
    "/etc/ssl/cert.pem",  # Alpine, macOS
)


def system_ca_bundle() -> str | None:
    """The first CA bundle of the operating system that exists, if any."""
    return next((path for path in SYSTEM_CA_BUNDLES if os.path.isfile(path)), None)


def _outcome(answer: HttpResponse) -> str:
    """A call's outcome label: ``ok`` for a 2xx answer that is JSON (every authorization-server answer
    the plugin reads is), ``malformed`` for one that is not, ``error_status`` for any other status."""
    if not 200 <= answer.status < 300:
        return "error_status"
    try:
        json.loads(answer.body)
    except (ValueError, RecursionError):
        return "malformed"
    return "ok"


class OutboundCallFailed(Exception):
    """An outbound call failed: the remote server could not be asked, or its answer could not be read.

    Not a refusal itself: the caller decides what the request is answered (the 503
    :class:`~.errors.Unavailable`)."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            raise OutboundCallFailed("the answer is not JSON") from None


def _no_proxy_matcher(no_proxy: str | None) -> Callable[[str], bool]:
    """``no_proxy``: comma-separated host names (suffix match), IP addresses, CIDRs, or ``*``."""
    entries = [e.strip().lower().lstrip(".") for e in (no_proxy or "").split(",") if e.strip()]
    networks = []
    names = []
    for entry in entries:
        host = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        try:
            networks.append(ipaddress.ip_network(host.strip("[]"), strict=False))
        except ValueError:
            names.append(host)

    def bypass(hostname: str) -> bool:
        hostname = hostname.lower().strip("[]")
        if "*" in names:
            return True
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            return any(hostname == n or hostname.endswith("." + n) for n in names)
        return any(address in network for network in networks) or hostname in names

    return bypass


class _Adapter(HTTPAdapter):
    """Connections bounded by the request's deadline, and the configured ``Proxy-Authorization``
    value sent to the proxy it belongs to."""

    def __init__(self, proxy_auth: Mapping[str, str]) -> None:
        super().__init__(pool_maxsize=POOL_SIZE)
        self.proxy_auth = dict(proxy_auth)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def proxy_headers(self, proxy: str) -> dict[str, str]:
        headers = super().proxy_headers(proxy)
        value = self.proxy_auth.get(proxy)
        if value:
            headers["Proxy-Authorization"] = value
        return headers


RESOLVER_THREADS = 8
POOL_SIZE = 64  # idle connections kept per host and instance (urllib3's 10 is few for gevent's concurrency)
_resolver: ThreadPoolExecutor | None = None
_lookups: dict[tuple[str, int], Future[list[tuple[Any, ...]]]] = {}
_resolver_lock = threading.Lock()


def resolve(host: str, port: int, seconds: float) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` for a TCP connection, waiting at most ``seconds``.

    The lookup runs in a small pool of its own (greenlets in gevent mode, whose resolver does not
    block the others), so a resolver that does not answer costs the request its budget and no more;
    the abandoned lookup ends by the system resolver's own timeout. Concurrent lookups of one name
    share one, so a name whose resolver stalls holds one worker, not the pool (other names, other
    authorization servers, keep resolving). An IP literal is not looked up.
    """
    global _resolver
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    key = (host, port)
    with _resolver_lock:
        lookup = _lookups.get(key)
        started = lookup is None
        if lookup is None:
            if _resolver is None:
                _resolver = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="ai-mcp-oauth2-resolver")
            lookup = _lookups[key] = _resolver.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    if started:  # outside the lock: a lookup already done runs the callback here, at once
        lookup.add_done_callback(lambda done: _forget(key, done))
    try:
        return lookup.result(timeout=max(seconds, 0.0))
    except FutureTimeout:
        raise TimeoutError(f"resolving {host} took longer than the request's budget") from None


def _forget(key: tuple[str, int], lookup: Future[list[tuple[Any, ...]]]) -> None:
    with _resolver_lock:
        if _lookups.get(key) is lookup:
            del _lookups[key]


class _Outbound:
    """One outbound call under a deadline: the sockets it uses, shut down when the deadline passes
    (by :data:`_watchdog`) unless the call has finished.

    Shutting a socket down (not closing it) wakes whoever is blocked on it, thread or greenlet,
    and leaves closing to its owner. :meth:`finish` comes before the connection goes back to the
    pool, so a late deadline never cuts a connection another request has taken since.
    """

    __slots__ = ("deadline", "sockets", "lock", "expired", "done")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.sockets: list[Any] = []
        self.lock = threading.Lock()
        self.expired = False
        self.done = False

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, sock: Any) -> None:
        with self.lock:
            self.sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self.lock:
            if self.done:
                return
            self.expired = True
            for sock in self.sockets:
                _shut(sock)

    def finish(self) -> None:
        with self.lock:
            self.done = True
            self.sockets.clear()


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # noqa: BLE001 - closed, detached by the TLS wrapper (its guard covers it), or odd
        pass


class _Watchdog:
    """One thread (a greenlet in gevent mode) that expires outbound calls at their deadlines: no
    thread per call, which a process limit could refuse."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, _Outbound]] = []
        self.seq = itertools.count()
        self.thread: threading.Thread | None = None

    def watch(self, call: _Outbound) -> None:
        """Raises OutboundCallFailed when the watchdog cannot run: a call that cannot be bounded is not made."""
        with self.cond:
            if self.thread is None:
                thread = threading.Thread(target=self._run, name="ai-mcp-oauth2-deadlines", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had (a process limit): try again next call
                    raise OutboundCallFailed("the outbound call's deadline cannot be kept") from None
                self.thread = thread
            heapq.heappush(self.heap, (call.deadline, next(self.seq), call))
            self.cond.notify()

    def _run(self) -> None:
        while True:
            due: list[_Outbound] = []
            with self.cond:
                while not due:
                    now = time.monotonic()
                    while self.heap and (self.heap[0][2].done or self.heap[0][0] <= now):
                        call = heapq.heappop(self.heap)[2]
                        if not call.done:
                            due.append(call)
                    if not due:
                        self.cond.wait(self.heap[0][0] - now if self.heap else None)
            for call in due:
                try:
                    call.expire()
                except Exception as exc:  # noqa: BLE001 - the watchdog must outlive anything
                    log.error("expiring an outbound call failed: %s", type(exc).__name__)


_watchdog = _Watchdog()
_calls = threading.local()


def _current_call() -> _Outbound | None:
    return getattr(_calls, "call", None)


class _BoundedConnectionMixin:
    """urllib3 connections that keep to the current call's deadline (module docstring).

    A new connection resolves and connects within the deadline; while it connects and shakes hands
    a duplicate of its socket is watched (the TLS wrapper detaches the original), and from the
    request on the connection's own socket is.
    """

    _dns_host: str
    port: int
    timeout: Any
    socket_options: Any
    sock: Any
    _guard: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        call = _current_call()
        if call is None:
            return super()._new_conn()  # type: ignore[misc, no-any-return]
        # urllib3's own exception, not an OSError: urllib3 swallows a connection reset while sending
        # a request (the answer may still be readable) and would then read from no socket at all.
        try:
            addresses = resolve(self._dns_host.strip("[]"), self.port, call.left())
        except OSError as exc:
            raise NewConnectionError(self, f"name resolution failed: {type(exc).__name__}") from None  # type: ignore[arg-type]
        error = "the request's time budget is spent"
        for family, kind, proto, _name, address in addresses:
            left = call.left()
            if left <= 0:
                break
            sock = socket.socket(family, kind, proto)
            guard = sock.dup()
            call.watch(guard)
            try:
                for level, option, value in self.socket_options or ():
                    sock.setsockopt(level, option, value)
                sock.settimeout(min(self.timeout, left) if isinstance(self.timeout, (int, float)) else left)
                sock.connect(address)
                self._guard = guard
                return sock
            except OSError as exc:
                error = type(exc).__name__
                sock.close()
                guard.close()
        raise NewConnectionError(self, f"could not connect: {error}")  # type: ignore[arg-type]

    def connect(self) -> None:
        try:
            super().connect()  # type: ignore[misc]
        finally:
            if self._guard is not None:
                self._guard.close()
                self._guard = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        call = _current_call()
        if call is not None:
            call.watch(self)
        super().request(*args, **kwargs)  # type: ignore[misc]

    def shutdown(self, how: int) -> None:
        """What the watchdog calls on a watched connection: shut its current socket down (under
        urllib3's TLS-in-TLS transport, used through an ``https://`` proxy, the socket it wraps)."""
        sock = self.sock
        while sock is not None and not hasattr(sock, "shutdown"):
            sock = getattr(sock, "socket", None)
        if sock is not None:
            sock.shutdown(how)


class _BoundedHTTPConnection(_BoundedConnectionMixin, HTTPConnection):
    pass


class _BoundedHTTPSConnection(_BoundedConnectionMixin, HTTPSConnection):
    pass


class _BoundedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _BoundedHTTPConnection


class _BoundedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _BoundedHTTPSConnection


_POOLS = {"http": _BoundedHTTPPool, "https": _BoundedHTTPSPool}


class HttpClient:
    """The instance's outbound session."""

    def __init__(self, config: Config) -> None:
        self.timeout = config.timeout / 1000.0  # milliseconds in Kong's schema
        self.ca_bundle: str | bool = system_ca_bundle() or True
        self.verify: str | bool = self.ca_bundle if config.ssl_verify else False
        self.session = requests.Session()
        self.session.trust_env = False
        proxy_auth = {}
        if config.http_proxy and config.http_proxy_authorization:
            proxy_auth[config.http_proxy] = config.http_proxy_authorization
        if config.https_proxy and config.https_proxy_authorization:
            proxy_auth[config.https_proxy] = config.https_proxy_authorization
        adapter = _Adapter(proxy_auth)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.proxies = {k: v for k, v in (("http", config.http_proxy), ("https", config.https_proxy)) if v}
        self.bypass = _no_proxy_matcher(config.no_proxy)
        self.base_headers = {"Accept": "application/json", "User-Agent": "kong-ai-mcp-oauth2"}
        if not config.keepalive:
            self.base_headers["Connection"] = "close"

    def _proxies(self, url: str) -> dict[str, str]:
        if not self.proxies or self.bypass(urlsplit(url).hostname or ""):
            return {}
        return self.proxies

    def request(
        self,
        method: str,
        url: str,
        *,
        data: Iterable[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        cert: tuple[str, str] | None = None,
        verify: bool | None = None,
        kind: str = "other",
    ) -> HttpResponse:
        """Send a request; ``verify`` overrides ``ssl_verify`` (the mTLS endpoint has its own).

        ``kind`` (discovery, jwks, introspection, exchange) names the call in the metrics
        (behaviour §11.5): its outcome and duration are recorded here, whatever the caller makes of it.
        """

        def send() -> HttpResponse:
            left = remaining()
            if left is None:
                return self._send(method, url, data, headers, cert, verify, self.timeout, None)
            if left <= 0.01:
                raise OutboundCallFailed("the request's time budget is spent")
            call = _Outbound(time.monotonic() + left)
            _watchdog.watch(call)
            _calls.call = call
            try:
                answer = self._send(method, url, data, headers, cert, verify, min(self.timeout, left), call)
            finally:
                _calls.call = None
                call.finish()
            if call.expired or call.left() <= 0:
                raise OutboundCallFailed("the request's time budget was spent on the call")
            return answer

        sink = metrics.sink
        if not sink.enabled:
            return send()
        started = time.monotonic()
        outcome = "failed"
        try:
            answer = send()
            outcome = _outcome(answer)
            return answer
        finally:
            sink.call(kind, outcome, time.monotonic() - started)

    def _send(
        self,
        method: str,
        url: str,
        data: Iterable[tuple[str, str]] | None,
        headers: Mapping[str, str] | None,
        cert: tuple[str, str] | None,
        verify: bool | None,
        timeout: float,
        call: _Outbound | None,
    ) -> HttpResponse:
        try:
            response = self.session.request(
                method,
                url,
                data=list(data) if data is not None else None,
                headers={**self.base_headers, **(headers or {})},
                timeout=timeout,
                verify=self.verify if verify is None else (self.ca_bundle if verify else False),
                cert=cert,
                proxies=self._proxies(url),
                allow_redirects=False,
                stream=True,
            )
        except (requests.RequestException, OSError, ValueError) as exc:
            raise OutboundCallFailed(type(exc).__name__) from None
        try:
            chunks = []
            size = 0
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > MAX_BODY:
                    raise OutboundCallFailed("the answer is too large")
                chunks.append(chunk)
        except (requests.RequestException, OSError, ValueError, AttributeError) as exc:
            raise OutboundCallFailed(type(exc).__name__) from None
        finally:
            if call is not None:
                call.finish()  # before the connection goes back to the pool
            response.close()
        return HttpResponse(response.status_code, b"".join(chunks))

    def get(self, url: str, kind: str = "other") -> HttpResponse:
        return self.request("GET", url, kind=kind)

    def close(self) -> None:
        self.session.close()
