"""The kong-pdk glue: fail closed on any exception (behaviour §2) and never log a token."""

from __future__ import annotations

import json
from typing import Any

from kong_plugins.ai_mcp_oauth2 import plugin

from .conftest import kong_config


class FakeKong:
    """Records PDK calls the way kong-pdk's FakeClasses would turn them into RPCs."""

    def __init__(self, answers: dict[str, Any], calls: list[tuple[str, tuple[Any, ...]]], prefix: str = "kong") -> None:
        self._answers, self._calls, self._prefix = answers, calls, prefix

    def __getattr__(self, name: str) -> FakeKong:
        return FakeKong(self._answers, self._calls, f"{self._prefix}.{name}")

    def __call__(self, *args: Any) -> Any:
        self._calls.append((self._prefix, args))
        answer = self._answers.get(self._prefix)
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(config: dict[str, Any], answers: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    calls: list[tuple[str, tuple[Any, ...]]] = []
    plugin.Plugin(config).access(FakeKong(answers, calls))
    return calls


def test_missing_token_makes_five_round_trips_then_exits_with_the_challenge() -> None:
    calls = run(kong_config(), {
        "kong.request.get_headers": {}, "kong.request.get_path": "/mcp",
        "kong.request.get_forwarded_scheme": "http", "kong.request.get_forwarded_host": "localhost",
        "kong.request.get_forwarded_port": 8000,
    })  # fmt: skip
    names = [name for name, _ in calls]
    assert names == ["kong.request.get_headers", "kong.request.get_path", "kong.request.get_forwarded_scheme",
                     "kong.request.get_forwarded_host", "kong.request.get_forwarded_port", "kong.response.exit"]
    status, body, headers = calls[-1][1]
    assert status == 401
    assert json.loads(body)["error"] == "unauthorized"
    assert headers["WWW-Authenticate"] == (
        'Bearer resource_metadata="http://localhost:8000/mcp/.well-known/oauth-protected-resource"')


def test_an_exception_inside_the_handler_becomes_a_500_the_plugin_sends_itself() -> None:
    calls = run(kong_config(), {"kong.request.get_headers": RuntimeError("Bearer secret-token in message")})
    assert calls[-1][0] == "kong.response.exit"
    status, body, _ = calls[-1][1]
    assert status == 500 and json.loads(body)["error"] == "server_error"


def test_the_exception_message_is_not_logged(caplog: Any) -> None:
    run(kong_config(), {"kong.request.get_headers": RuntimeError("Bearer secret-token")})
    assert "RuntimeError" in caplog.text and "secret-token" not in caplog.text


def test_nothing_is_called_after_exit() -> None:
    calls = run(kong_config(), {"kong.request.get_headers": {}, "kong.request.get_path": "/mcp/.well-known/oauth-protected-resource",
                                "kong.request.get_method": "GET"})
    assert calls[-1][0] == "kong.response.exit" and [n for n, _ in calls].count("kong.response.exit") == 1
    assert len(calls) == 4


def test_a_bad_config_is_logged_at_instance_start_naming_the_field(caplog: Any) -> None:
    plugin.Plugin(kong_config(timeout=-5))
    assert "timeout" in caplog.text


def test_rpc_debug_lines_are_dropped_because_they_carry_request_headers() -> None:
    seen: list[str] = []
    debug = plugin._RedactingFilter(lambda fmt, *a: seen.append(fmt % a if a else fmt))
    debug("rpc: #%d method: %s args: %s", 3, "plugin.Step", "{'authorization': ['Bearer abc']}")
    debug("instance #%d started", 1)
    assert seen == ["instance #1 started"]


def test_an_accepted_token_sets_claim_headers_in_one_call_and_strips_authorization() -> None:
    from kong_plugins.ai_mcp_oauth2.gateway import Proxy

    calls: list[tuple[str, tuple[Any, ...]]] = []
    plugin._apply(FakeKong({}, calls), Proxy(set_headers={"X-User": "alice"}, clear_headers=("Authorization",)))
    assert calls == [("kong.service.request.set_headers", ({"X-User": "alice"},)),
                     ("kong.service.request.clear_header", ("Authorization",))]
