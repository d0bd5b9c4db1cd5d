"""Metrics (behaviour §11.5): the families, their labels, the no-op default and the hooks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from prometheus_client import generate_latest

from kong_plugins.ai_mcp_oauth2 import errors, metrics
from kong_plugins.ai_mcp_oauth2.cache import ExpiringCache
from kong_plugins.ai_mcp_oauth2.gateway import Gateway, LetThrough, render
from kong_plugins.ai_mcp_oauth2.http import HttpClient, HttpResponse, OutboundCallFailed

from .conftest import kong_config
from .test_gateway import FakeRequest

FAMILIES = (
    "ai_mcp_oauth2_requests_total",
    "ai_mcp_oauth2_authorization_server_calls_total",
    "ai_mcp_oauth2_authorization_server_call_duration_seconds_bucket",
    "ai_mcp_oauth2_cache_lookups_total",
    "ai_mcp_oauth2_redis_errors_total",
)


@pytest.fixture
def recorder() -> Iterator[metrics.PrometheusMetrics]:
    recording = metrics.PrometheusMetrics()
    metrics.install(recording)
    try:
        yield recording
    finally:
        metrics.install(metrics.NOOP)


def value(recording: metrics.PrometheusMetrics, name: str, **labels: str) -> float:
    found = recording.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def requests_counted(recording: metrics.PrometheusMetrics, decision: str, status: str, reason: str) -> float:
    return value(recording, "ai_mcp_oauth2_requests_total", decision=decision, status=status, reason=reason)


# ----------------------------------------------------------------------------- families and labels
def test_every_family_is_exposed_from_the_start_with_its_series_at_zero() -> None:
    text = generate_latest(metrics.PrometheusMetrics().registry).decode()
    for family in FAMILIES[1:]:
        assert family in text
    assert "# TYPE ai_mcp_oauth2_requests_total counter" in text
    assert "# TYPE ai_mcp_oauth2_authorization_server_call_duration_seconds histogram" in text
    recording = metrics.PrometheusMetrics()
    for kind in metrics.KINDS:
        for outcome in metrics.OUTCOMES:
            labels = {"kind": kind, "outcome": outcome}
            assert recording.registry.get_sample_value("ai_mcp_oauth2_authorization_server_calls_total", labels) == 0
    for cache in metrics.CACHES:
        labels = {"cache": cache, "layer": "local", "outcome": "miss"}
        assert recording.registry.get_sample_value("ai_mcp_oauth2_cache_lookups_total", labels) == 0
    for cache in metrics.SHARED_CACHES:  # the cluster cache backs these two only
        for outcome in metrics.LOOKUP_OUTCOMES:
            labels = {"cache": cache, "layer": "redis", "outcome": outcome}
            assert recording.registry.get_sample_value("ai_mcp_oauth2_cache_lookups_total", labels) == 0
    labels = {"cache": "jwks", "layer": "redis", "outcome": "miss"}
    assert recording.registry.get_sample_value("ai_mcp_oauth2_cache_lookups_total", labels) is None
    for operation in metrics.REDIS_OPERATIONS:
        assert recording.registry.get_sample_value("ai_mcp_oauth2_redis_errors_total", {"operation": operation}) == 0


def test_the_families_count_with_their_labels() -> None:
    recording = metrics.PrometheusMetrics()
    recording.request("accepted", 200, "accepted")
    recording.refused(errors.MissingToken())
    recording.refused(errors.MissingToken())
    recording.call("jwks", "ok", 0.02)
    recording.call("jwks", "failed", 3.0)
    recording.lookup("tokens", "local", "hit")
    recording.redis_error("lock")
    recording.redis_error("lock")
    assert value(recording, "ai_mcp_oauth2_redis_errors_total", operation="lock") == 2
    assert requests_counted(recording, "accepted", "200", "accepted") == 1
    assert requests_counted(recording, "refused", "401", "missing_token") == 2
    assert value(recording, "ai_mcp_oauth2_authorization_server_calls_total", kind="jwks", outcome="ok") == 1
    assert value(recording, "ai_mcp_oauth2_authorization_server_calls_total", kind="jwks", outcome="failed") == 1
    assert value(recording, "ai_mcp_oauth2_authorization_server_call_duration_seconds_count", kind="jwks") == 2
    assert value(recording, "ai_mcp_oauth2_authorization_server_call_duration_seconds_sum", kind="jwks") == 3.02
    assert (
        value(recording, "ai_mcp_oauth2_authorization_server_call_duration_seconds_bucket", kind="jwks", le="0.025")
        == 1
    )
    assert value(recording, "ai_mcp_oauth2_cache_lookups_total", cache="tokens", layer="local", outcome="hit") == 1


REASONS = [
    (errors.MissingToken(), 401, "missing_token"),
    (errors.InvalidToken(), 401, "invalid_token"),
    (errors.InvalidToken("The access token has expired"), 401, "expired"),
    (errors.InvalidToken("The access token is not active"), 401, "inactive"),
    (errors.InvalidToken("The authorization server does not accept this access token"), 401, "inactive"),
    (errors.InvalidToken("The access token's signature is invalid"), 401, "signature"),
    (errors.InvalidToken("The access token is not intended for this resource"), 401, "audience"),
    (errors.InvalidToken("The access token could not be exchanged for the upstream"), 401, "exchange_refused"),
    (errors.InvalidDpopProof("The DPoP proof's signature is invalid"), 401, "invalid_dpop_proof"),
    (errors.UseDpopNonce("n0nce"), 401, "use_dpop_nonce"),
    (errors.InvalidToken("The access token is bound to another key than the DPoP proof's"), 401, "invalid_token"),
    (errors.InsufficientScope(("tools:call",)), 403, "insufficient_scope"),
    (errors.Forbidden(), 403, "access_denied"),
    (errors.InvalidRequest(), 400, "invalid_request"),
    (errors.HeaderMismatch(), 400, "invalid_request"),
    (errors.InvalidMessage(), 400, "invalid_request"),
    (errors.PayloadTooLarge(), 413, "request_too_large"),
    (errors.LengthRequired(), 411, "length_required"),
    (errors.MethodNotAllowed(), 405, "method_not_allowed"),
    (errors.Unavailable("The authorization server's metadata could not be obtained"), 503, "discovery"),
    (errors.Unavailable("The authorization server's keys could not be obtained"), 503, "jwks"),
    (errors.Unavailable("The authorization server could not introspect the token"), 503, "introspection"),
    (errors.Unavailable("The authorization server could not be reached"), 503, "introspection"),
    (errors.Unavailable("The introspection answer's exp is not a number"), 503, "introspection"),
    (errors.Unavailable("The token exchange endpoint could not be reached"), 503, "exchange"),
    (errors.Unavailable("Timed out waiting for the authorization server"), 503, "timeout"),
    (errors.Unavailable("The gateway could not decide in time"), 503, "timeout"),
    (errors.Unavailable("The gateway is overloaded"), 503, "overloaded"),
    (errors.Misconfigured(), 500, "misconfigured"),
    (errors.InternalError(), 500, "internal"),
]


@pytest.mark.parametrize(("refusal", "status", "reason"), REASONS)
def test_a_refusals_reason_comes_from_its_class_and_cause(refusal: errors.Refusal, status: int, reason: str) -> None:
    assert refusal.status == status
    assert metrics.refusal_reason(refusal) == reason


def test_a_reason_is_one_of_a_fixed_set_whatever_a_description_says() -> None:
    fixed = {reason for _, _, reason in REASONS} | {"malformed", "issuer", "lost_event", "unavailable"}
    for cls in (errors.InvalidToken, errors.Unavailable, errors.InvalidRequest, errors.Forbidden):
        for text in ("eyJhbGciOi.secret-token", "sub=alice@example.com", "https://as.example.com/x", ""):
            assert metrics.refusal_reason(cls(text or None)) in fixed


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:9542", ("127.0.0.1", 9542)), ("localhost:1", ("localhost", 1)), ("[::1]:9542", ("::1", 9542))],
)
def test_metrics_addresses(text: str, address: tuple[str, int]) -> None:
    assert metrics.parse_address(text) == address


@pytest.mark.parametrize("text", ["", "9542", ":9542", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:0", "h:70000"])
def test_a_bad_metrics_address_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        metrics.parse_address(text)


# ----------------------------------------------------------------------------- the no-op default
class CountingNoMetrics(metrics.NoMetrics):
    """The default's behaviour (``enabled`` false), counting which hooks the request path calls."""

    def __init__(self) -> None:
        self.called: list[str] = []

    def request(self, decision: str, status: int, reason: str) -> None:
        self.called.append("request")

    def refused(self, refusal: errors.Refusal) -> None:
        self.called.append("refused")

    def call(self, kind: str, outcome: str, seconds: float) -> None:
        self.called.append("call")

    def lookup(self, cache: str, layer: str, outcome: str) -> None:
        self.called.append("lookup")


def test_metrics_are_off_by_default_and_every_noop_hook_does_nothing() -> None:
    assert metrics.sink is metrics.NOOP and not metrics.NOOP.enabled
    assert metrics.NoMetrics.__slots__ == ()  # nothing to lock, nothing to look up
    assert metrics.NOOP.request("accepted", 200, "accepted") is None
    assert metrics.NOOP.refused(errors.MissingToken()) is None
    assert metrics.NOOP.call("jwks", "ok", 0.1) is None
    assert metrics.NOOP.lookup("tokens", "local", "hit") is None
    assert metrics.NOOP.redis_error("get") is None


def test_without_metrics_the_request_path_only_calls_the_noop_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingNoMetrics()
    monkeypatch.setattr(metrics, "sink", counting)
    monkeypatch.setattr(metrics, "refusal_reason", lambda _: pytest.fail("a reason worked out with metrics off"))
    accepted = Gateway(kong_config(), services=lambda _: (AcceptAll(), None)).handle(
        FakeRequest({"authorization": ["Bearer abc"]})
    )
    assert isinstance(accepted, LetThrough)
    Gateway(kong_config()).handle(FakeRequest())
    assert counting.called == ["request", "refused"]
    cache: ExpiringCache[str, int] = ExpiringCache(lambda: 0.0, name="tokens")
    cache.get("x")
    assert counting.called[-1] == "lookup"
    client = client_answering(monkeypatch, HttpResponse(200, b"{}"))
    client.request("GET", "https://as.example.com/jwks", kind="jwks")
    assert "call" not in counting.called  # no clock read, no outcome worked out: the hook is skipped whole


# ----------------------------------------------------------------------------- the hooks
class AcceptAll:
    def verify(self, token: str) -> Mapping[str, object]:
        return {"sub": "alice"}


class Refuse:
    def __init__(self, refusal: errors.Refusal) -> None:
        self.refusal = refusal

    def verify(self, token: str) -> Mapping[str, object]:
        raise self.refusal


def test_each_gateway_decision_is_counted_once(recorder: metrics.PrometheusMetrics) -> None:
    def handle(verifier: Any, request: FakeRequest, **config: Any) -> object:
        return Gateway(kong_config(**config), services=lambda _: (verifier, None)).handle(request)

    token = {"authorization": ["Bearer abc"]}
    handle(AcceptAll(), FakeRequest(token))
    handle(AcceptAll(), FakeRequest(token))
    handle(AcceptAll(), FakeRequest())
    handle(Refuse(errors.InvalidToken("The access token has expired")), FakeRequest(token))
    handle(Refuse(errors.InsufficientScope(("a",))), FakeRequest(token))
    handle(Refuse(errors.Unavailable("The authorization server's keys could not be obtained")), FakeRequest(token))
    handle(AcceptAll(), FakeRequest(path="/.well-known/oauth-protected-resource/mcp", method="GET"))
    handle(AcceptAll(), FakeRequest(path="/.well-known/oauth-protected-resource/mcp", method="DELETE"))
    handle(AcceptAll(), FakeRequest({"content-length": ["2000000"], **token}))
    handle(AcceptAll(), FakeRequest(token), resource=None)  # a bad config
    assert requests_counted(recorder, "accepted", "200", "accepted") == 2
    assert requests_counted(recorder, "refused", "401", "missing_token") == 1
    assert requests_counted(recorder, "refused", "401", "expired") == 1
    assert requests_counted(recorder, "refused", "403", "insufficient_scope") == 1
    assert requests_counted(recorder, "refused", "503", "jwks") == 1
    assert requests_counted(recorder, "metadata", "200", "metadata") == 1
    assert requests_counted(recorder, "refused", "405", "method_not_allowed") == 1
    assert requests_counted(recorder, "refused", "413", "request_too_large") == 1
    assert requests_counted(recorder, "refused", "500", "misconfigured") == 1
    render(errors.InternalError(), None, None)  # the plugin's catch-all and the server's guard answer through it
    assert requests_counted(recorder, "refused", "500", "internal") == 1
    total = sum(
        sample.value
        for family in recorder.registry.collect()
        if family.name == "ai_mcp_oauth2_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    )
    assert total == 11


def client_answering(monkeypatch: pytest.MonkeyPatch, *answers: HttpResponse | Exception) -> HttpClient:
    client = HttpClient.__new__(HttpClient)
    client.timeout = 10.0
    queue = list(answers)

    def call(*_: Any) -> HttpResponse:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(client, "_send", call)
    return client


def test_outbound_calls_are_counted_by_kind_and_outcome_with_their_duration(
    recorder: metrics.PrometheusMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_answering(
        monkeypatch,
        HttpResponse(200, b'{"active": true}'),
        HttpResponse(200, b"<html>"),
        HttpResponse(401, b"{}"),
        OutboundCallFailed("ConnectionError"),
    )
    for _ in range(3):
        client.request("POST", "https://as.example.com/introspect", kind="introspection")
    with pytest.raises(OutboundCallFailed):
        client.get("https://as.example.com/jwks", kind="jwks")

    def calls(kind: str, outcome: str) -> float:
        return value(recorder, "ai_mcp_oauth2_authorization_server_calls_total", kind=kind, outcome=outcome)

    assert calls("introspection", "ok") == calls("introspection", "malformed") == 1
    assert calls("introspection", "error_status") == 1 and calls("jwks", "failed") == 1
    assert calls("exchange", "ok") == calls("discovery", "ok") == 0
    assert value(recorder, "ai_mcp_oauth2_authorization_server_call_duration_seconds_count", kind="introspection") == 3
    assert value(recorder, "ai_mcp_oauth2_authorization_server_call_duration_seconds_count", kind="jwks") == 1


def test_cache_lookups_are_counted_by_the_caches_name(recorder: metrics.PrometheusMetrics) -> None:
    now = [0.0]
    cache: ExpiringCache[str, str] = ExpiringCache(lambda: now[0], name="exchange")
    assert cache.get("k") is None
    cache.put("k", "v", until=10.0)
    assert cache.get("k") == "v"
    now[0] = 11.0
    assert cache.get("k") is None

    def lookups(outcome: str) -> float:
        return value(recorder, "ai_mcp_oauth2_cache_lookups_total", cache="exchange", layer="local", outcome=outcome)

    assert lookups("hit") == 1 and lookups("miss") == 2
