"""The kong-pdk glue: fail closed on any exception (behaviour §2) and never log a token."""

from __future__ import annotations

import json
from typing import Any

from kong_plugins.ai_mcp_oauth2 import plugin, pluginserver

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
    assert names == [
        "kong.request.get_headers",
        "kong.request.get_path",
        "kong.request.get_forwarded_scheme",
        "kong.request.get_forwarded_host",
        "kong.request.get_forwarded_port",
        "kong.response.exit",
    ]
    status, body, headers = calls[-1][1]
    assert status == 401
    assert json.loads(body)["error"] == "unauthorized"
    assert headers["WWW-Authenticate"] == (
        'Bearer resource_metadata="http://localhost:8000/mcp/.well-known/oauth-protected-resource"'
    )


def test_an_exception_inside_the_handler_becomes_a_500_the_plugin_sends_itself() -> None:
    calls = run(kong_config(), {"kong.request.get_headers": RuntimeError("Bearer secret-token in message")})
    assert calls[-1][0] == "kong.response.exit"
    status, body, _ = calls[-1][1]
    assert status == 500 and json.loads(body)["error"] == "server_error"


def test_the_exception_message_is_not_logged(caplog: Any) -> None:
    run(kong_config(), {"kong.request.get_headers": RuntimeError("Bearer secret-token")})
    assert "RuntimeError" in caplog.text and "secret-token" not in caplog.text


def test_nothing_is_called_after_exit() -> None:
    calls = run(
        kong_config(),
        {
            "kong.request.get_headers": {},
            "kong.request.get_path": "/mcp/.well-known/oauth-protected-resource",
            "kong.request.get_method": "GET",
        },
    )
    assert calls[-1][0] == "kong.response.exit" and [n for n, _ in calls].count("kong.response.exit") == 1
    assert len(calls) == 4


def test_a_bad_config_is_logged_at_instance_start_naming_the_field(caplog: Any) -> None:
    plugin.Plugin(kong_config(timeout=-5))
    assert "timeout" in caplog.text


class EchoServer:
    """Stands for kong-pdk's PluginServer: ``plugin.Echo`` returns its argument."""

    def __init__(self) -> None:
        self.ps = self
        self.errors: list[str] = []
        self.logger = self

    def echo(self, value: Any) -> Any:
        return value

    def error(self, message: str) -> None:
        self.errors.append(message)


def test_the_connection_survives_strings_that_are_not_utf8() -> None:
    """Kong sends header bytes as msgpack str; kong-pdk's own loop dies on invalid UTF-8 (fail-open)."""
    import socket
    import threading

    import msgpack

    ours, kongs = socket.socketpair()
    server = EchoServer()
    thread = threading.Thread(target=pluginserver.handle_connection, args=(server, ours, None), daemon=True)
    thread.start()
    raw = b"Bearer \xff\xfe abc"  # not UTF-8
    kongs.sendall(msgpack.packb([0, 1, "plugin.Echo", [raw]], use_bin_type=False))  # bytes as str, like Kong
    kongs.sendall(msgpack.packb([0, 2, "plugin.Echo", ["still here"]]))
    unpacker = msgpack.Unpacker(raw=True)
    answers: list[Any] = []
    kongs.settimeout(5)
    while len(answers) < 2:
        unpacker.feed(kongs.recv(65536))
        answers += list(unpacker)
    assert answers[0] == [1, 1, None, raw]  # the same bytes come back, nothing crashed
    assert answers[1] == [1, 2, None, b"still here"]
    kongs.close()
    thread.join(5)
    ours.close()


def test_header_values_with_odd_bytes_are_never_accepted_as_tokens() -> None:
    calls = run(kong_config(), {
        "kong.request.get_headers": {"authorization": ["Bearer ab\udcffcd"]}, "kong.request.get_path": "/mcp",
        "kong.request.get_forwarded_scheme": "http", "kong.request.get_forwarded_host": "localhost",
        "kong.request.get_forwarded_port": 8000,
    })  # fmt: skip
    assert calls[-1][0] == "kong.response.exit" and calls[-1][1][0] == 400


def test_multiprocessing_mode_is_refused() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "kong_plugins.ai_mcp_oauth2.cli", "-m", "--kong-prefix", "/tmp"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "multiprocessing is not supported" in result.stderr


def test_an_accepted_token_sets_claim_headers_in_one_call_and_strips_authorization() -> None:
    from kong_plugins.ai_mcp_oauth2.gateway import LetThrough

    calls: list[tuple[str, tuple[Any, ...]]] = []
    plugin._let_through(
        FakeKong({}, calls), LetThrough(set_headers={"X-User": "alice"}, clear_headers=("Authorization",))
    )
    assert calls == [
        ("kong.service.request.set_headers", ({"X-User": "alice"},)),
        ("kong.service.request.clear_header", ("Authorization",)),
    ]


def raw_body(answer: Any, file_limit: int | None = None) -> tuple[bytes | None, list[tuple[str, tuple[Any, ...]]]]:
    calls: list[tuple[str, tuple[Any, ...]]] = []
    return plugin.KongRequest(FakeKong({"kong.request.get_raw_body": answer}, calls)).raw_body(file_limit), calls


def test_raw_body_is_one_get_raw_body_round_trip_without_arguments() -> None:
    body, calls = raw_body(b'{"jsonrpc":"2.0","method":"tools/list","id":1}')
    assert body == b'{"jsonrpc":"2.0","method":"tools/list","id":1}'
    # no max_allowed_file_size: Kong is never asked to read a body nginx buffered to a file
    assert calls == [("kong.request.get_raw_body", ())]


def test_with_a_file_limit_kong_may_read_a_buffered_file_up_to_it() -> None:
    body, calls = raw_body(b"{}", file_limit=1048576)
    assert body == b"{}" and calls == [("kong.request.get_raw_body", (1048576,))]


def test_raw_body_keeps_every_byte_kong_sent_as_bin() -> None:
    sent = bytes(range(256))
    assert raw_body(sent) == (sent, [("kong.request.get_raw_body", ())])


def test_no_body_is_empty_bytes_not_none() -> None:
    body, calls = raw_body(b"")
    assert body == b"" and body is not None and len(calls) == 1


def test_a_body_sent_as_str_is_encoded_back_to_the_bytes_on_the_wire() -> None:
    import msgpack

    wire = "é".encode() + b"\xff\xfe{}"  # UTF-8 and bytes that are not UTF-8, packed as msgpack str
    packed = msgpack.packb(wire, use_bin_type=False)
    # decoded as pluginserver.handle_connection decodes Kong's frames
    arrived = msgpack.unpackb(packed, raw=False, unicode_errors="surrogateescape")
    assert isinstance(arrived, str)
    body, calls = raw_body(arrived)
    assert body == wire and len(calls) == 1


def test_kong_reporting_it_cannot_return_the_body_is_none() -> None:
    from kong_pdk.exception import PDKException

    # a step without data (Kong's nil), and an error step (kong-pdk raises PDKException)
    assert raw_body(None) == (None, [("kong.request.get_raw_body", ())])
    error = PDKException("exception from kong.request.get_raw_body: request body did not fit into client body buffer")
    assert raw_body(error) == (None, [("kong.request.get_raw_body", ())])


def test_any_other_answer_is_none() -> None:
    answers: list[object] = [0, [], {}, True]
    for answer in answers:
        body, calls = raw_body(answer)
        assert body is None and len(calls) == 1
