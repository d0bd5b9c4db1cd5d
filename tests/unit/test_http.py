"""Behaviour §7: only the config decides where and how the plugin connects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.budget import request_budget
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.http import MAX_BODY, HttpClient, OutboundCallFailed, _no_proxy_matcher
from tests.harness.httpserver import Handler as ServerHandler
from tests.harness.httpserver import HttpServer, send, serve

from .conftest import kong_config


class Handler(ServerHandler):
    seen: list[dict[str, str]] = []
    drip_finished = threading.Event()
    drip_completed = False

    def do_GET(self) -> None:  # noqa: N802
        Handler.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path == "/drip":  # a server that never stops sending its answer
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            Handler.drip_finished.clear()
            Handler.drip_completed = False
            try:
                for _ in range(50):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    threading.Event().wait(0.1)
                Handler.drip_completed = True
            except OSError:
                pass
            Handler.drip_finished.set()
            return
        body = b"x" * (MAX_BODY + 1) if self.path == "/big" else b'{"ok": true}'
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        send(self, 200, body)


@pytest.fixture
def server() -> Iterator[str]:
    with serve(Handler) as url:
        yield url


def client(**config: Any) -> HttpClient:
    return HttpClient(parse_config(kong_config(**config)))


def test_environment_proxies_and_ca_bundles_are_ignored(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    http = client()
    assert http.session.trust_env is False
    assert http.get(server + "/").json() == {"ok": True}
    http.close()


def test_configured_proxy_is_used_with_its_authorization(server: str) -> None:
    http = client(http_proxy=server, http_proxy_authorization="Basic cHJveHk6c2VjcmV0")
    Handler.seen.clear()
    response = http.get("http://as.example.com/jwks")  # the "proxy" (our server) answers
    assert response.status == 200
    assert Handler.seen[-1]["proxy-authorization"] == "Basic cHJveHk6c2VjcmV0"
    http.close()


def test_no_proxy_bypasses_the_proxy(server: str) -> None:
    http = client(http_proxy="http://127.0.0.1:9", no_proxy="localhost,127.0.0.1")
    assert http.get(server + "/").status == 200
    http.close()


@pytest.mark.parametrize("entries,host,bypass", [
    ("example.com", "as.example.com", True), (".example.com", "example.com", True),
    ("example.com", "badexample.com", False), ("10.0.0.0/8", "10.1.2.3", True), ("10.0.0.0/8", "11.0.0.1", False),
    ("*", "anything", True), ("", "as.example.com", False), ("localhost:8080", "localhost", True),
])  # fmt: skip
def test_no_proxy_matching(entries: str, host: str, bypass: bool) -> None:
    assert _no_proxy_matcher(entries)(host) is bypass


def test_redirects_are_not_followed_and_large_answers_refused(server: str) -> None:
    http = client()
    assert http.get(server + "/redirect").status == 302
    with pytest.raises(OutboundCallFailed):
        http.get(server + "/big")
    http.close()


def test_keepalive_false_closes_connections(server: str) -> None:
    http = client(keepalive=False)
    Handler.seen.clear()
    http.get(server + "/")
    assert Handler.seen[-1]["connection"] == "close"
    http.close()


def test_an_unreachable_server_is_a_failed_outbound_call() -> None:
    http = client(timeout=500)
    with pytest.raises(OutboundCallFailed):
        http.get("http://127.0.0.1:9/")
    http.close()


def test_the_request_budget_cuts_off_an_answer_that_keeps_dripping(server: str) -> None:
    """Kong proxies a request whose plugin answers too late: no outbound call may outlive the budget."""
    http = client()  # timeout 10 s: each byte arrives well within it
    with request_budget(0.5), pytest.raises(OutboundCallFailed):
        http.get(server + "/drip")  # would take 5 s to finish
    assert Handler.drip_finished.wait(10)
    assert Handler.drip_completed is False  # the client hung up mid-answer instead of reading it all
    with request_budget(0.0), pytest.raises(OutboundCallFailed):
        http.get(server + "/")  # a spent budget makes no call at all
    http.close()


def test_a_name_that_does_not_resolve_in_time_costs_the_budget_and_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system resolver can take 5 s per try and name server; the lookup is waited for only
    as long as the request's budget lasts, and the lookup left behind ends on its own."""
    import socket

    real = socket.getaddrinfo
    asked, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stalling(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "stalls.example":
            asked.set()
            release.wait(30)
            returned.set()
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stalling)
    http = client(timeout=60000)
    with request_budget(0.3), pytest.raises(OutboundCallFailed):
        http.get("http://stalls.example/jwks")
    assert asked.is_set() and not returned.is_set()  # the lookup was made, and abandoned at the budget
    release.set()
    http.close()


def test_an_ip_literal_is_not_looked_up(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from kong_plugins.ai_mcp_oauth2 import http as module

    looked_up: list[str] = []
    monkeypatch.setattr(module, "_resolver", None)
    real_submit = ThreadPoolExecutor.submit
    monkeypatch.setattr(
        ThreadPoolExecutor,
        "submit",
        lambda self, fn, host, *a: looked_up.append(host) or real_submit(self, fn, host, *a),
    )
    http = client()
    with request_budget(5):
        assert http.get(server + "/").status == 200  # 127.0.0.1
        assert socket.gethostbyname("localhost") == "127.0.0.1"
        assert http.get(server.replace("127.0.0.1", "localhost") + "/").status == 200
    assert looked_up == ["localhost"]
    http.close()


def test_a_stalled_name_holds_one_resolver_worker_and_other_names_still_resolve(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent lookups of one name share one: a flood of requests for a server whose DNS stalls
    must not take every resolver worker from the other authorization servers."""
    import socket

    from kong_plugins.ai_mcp_oauth2.http import RESOLVER_THREADS

    real = socket.getaddrinfo
    release = threading.Event()
    stalled: list[str] = []

    def resolver(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "stalls.example":
            stalled.append(host)
            release.wait(30)
        if host == "fine.example":
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    http = client(timeout=60000)
    failures: list[str] = []

    def stalls() -> None:
        with request_budget(1.0):
            try:
                http.get("http://stalls.example/jwks")
            except OutboundCallFailed:
                failures.append("unreachable")

    threads = [threading.Thread(target=stalls) for _ in range(RESOLVER_THREADS * 3)]
    for thread in threads:
        thread.start()
    with request_budget(5.0):
        assert http.get(server.replace("127.0.0.1", "fine.example") + "/").status == 200
    for thread in threads:
        thread.join(10)
    assert failures == ["unreachable"] * len(threads) and stalled == ["stalls.example"]
    release.set()
    http.close()


def test_concurrent_calls_keep_their_connections_for_the_next_ones() -> None:
    """urllib3 keeps 10 idle connections a host by default: with more concurrent calls (gevent mode
    has no limit) the rest were closed and reopened, a TLS handshake each."""
    barrier = threading.Barrier(20, timeout=10)
    connections: list[int] = []

    class Handler(ServerHandler):
        def setup(self) -> None:
            super().setup()
            connections.append(1)

        def do_GET(self) -> None:  # noqa: N802
            barrier.wait()
            send(self, 200, b"{}")

    srv = HttpServer(("127.0.0.1", 0), Handler).start()
    http = client()
    url = f"http://127.0.0.1:{srv.port}/"
    for _ in range(3):
        threads = [threading.Thread(target=http.get, args=(url,)) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert len(connections) == 20  # the first round's connections served the next two rounds
    http.close()
    srv.stop()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_deadline_watchdog_survives_a_call_through_an_https_proxy_and_keeps_bounding_calls() -> None:
    """Through an https:// proxy, urllib3 wraps the server's TLS in an SSLTransport, which has no
    shutdown(): cutting such a call at its deadline killed the watchdog, and every later call of the
    process lost its deadline (a dripping server then held its request as long as it dripped)."""
    from tests.harness.hostile import DripServer, SilentHttps, TlsProxy

    errors: list[str] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_type.__name__)
    silent, proxy, drip = SilentHttps(), TlsProxy(), DripServer("headers").start()
    try:
        proxied = client(https_proxy=f"https://127.0.0.1:{proxy.port}", ssl_verify=False, timeout=60000)
        with request_budget(1.0), pytest.raises(OutboundCallFailed):
            proxied.get(f"https://127.0.0.1:{silent.port}/jwks")
        direct = client(timeout=60000)
        outcome: list[str] = []

        def dripped() -> None:
            with request_budget(1.0):
                try:
                    direct.get(drip.url())
                except OutboundCallFailed:
                    outcome.append("unreachable")

        thread = threading.Thread(target=dripped)
        thread.start()
        thread.join(10)  # the drip would go on for hours
        assert outcome == ["unreachable"] and errors == []
        proxied.close()
        direct.close()
    finally:
        threading.excepthook = hook
        drip.stop()
        silent.stop()
        proxy.stop()


def test_a_watchdog_that_cannot_start_makes_no_call_and_is_started_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    from kong_plugins.ai_mcp_oauth2.http import _Outbound, _Watchdog

    watchdog = _Watchdog()

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(OutboundCallFailed):
        watchdog.watch(_Outbound(0.0))
    assert watchdog.thread is None and watchdog.heap == []
    monkeypatch.undo()
    call = _Outbound(0.0)  # already due
    watchdog.watch(call)
    assert eventually(lambda: call.expired)


def eventually(predicate: Any, timeout: float = 5.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        done.wait(0.01)
    return bool(predicate())


def test_a_lookup_that_is_done_before_it_is_waited_for_does_not_deadlock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name answered at once (/etc/hosts, a cache) can finish before its waiter registers: the
    bookkeeping then runs at once, in the caller, which must not hold the resolver's lock."""
    from concurrent.futures import Future

    from kong_plugins.ai_mcp_oauth2 import http as module

    class AtOnce:
        def submit(self, fn: Any, *args: Any) -> Future[Any]:
            done: Future[Any] = Future()
            done.set_result(fn(*args))
            return done

    monkeypatch.setattr(module, "_resolver", AtOnce())
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(module.resolve("localhost", 80, 5.0)), daemon=True)
    thread.start()
    thread.join(5)
    assert results and results[0][0][4][0] == "127.0.0.1"
    assert ("localhost", 80) not in module._lookups
