"""The plugin server's events and instances (pluginserver.py), driven as Kong drives them over RPC:
HandleEvent, then Step until "ret" or a terminal call, and CloseInstance on a config change."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2 import pluginserver
from kong_plugins.ai_mcp_oauth2.pluginserver import EventServer


class Scripted:
    """A plugin whose access handler is given by the test; counts close() calls."""

    handler: Callable[[Any], object] = staticmethod(lambda kong: None)
    closed: list[Scripted] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        type(self).handler(kong)

    def close(self) -> None:
        Scripted.closed.append(self)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EventServer]:
    from kong_pdk.module import Module

    monkeypatch.setattr(pluginserver, "REAP_EVERY", 0.05)

    class module:
        Plugin = Scripted
        Schema: list[Any] = []
        version = "0.1.0"
        priority = 1

    Scripted.closed = []
    ps = EventServer(name="test", lua_style=False, reply_timeout=5.0)
    ps.plugins["p"] = Module("p", module=module)
    yield ps


def start(server: EventServer) -> int:
    return int(server.start_instance({"Name": "p", "Config": json.dumps({})})["Id"])


def held(server: EventServer) -> tuple[int, int, int]:
    status = server.get_status()
    return status["Events"], status["Handlers"], status["ClosingInstances"]


def settle(server: EventServer) -> bool:
    """Handlers end on their own thread just after their last message: wait for that, bounded."""
    done = threading.Event()
    for _ in range(200):
        if held(server)[:2] == (0, 0):
            return True
        done.wait(0.01)
    return False


def test_a_handler_that_exits_ends_although_kong_never_steps_again(server: EventServer) -> None:
    """kong-pdk's gevent mode parks such a handler forever on its last put."""
    Scripted.handler = staticmethod(lambda kong: kong.response.exit(401, "no", {}))
    iid = start(server)
    for _ in range(50):
        first = server.handle_event({"InstanceId": iid, "EventName": "access"})
        assert first["Data"] == {"Method": "kong.response.exit", "Args": (401, "no", {})}
    assert settle(server), held(server)


def test_a_handler_that_returns_is_stepped_to_ret(server: EventServer) -> None:
    seen: list[Any] = []
    Scripted.handler = staticmethod(lambda kong: seen.append(kong.request.get_path()))
    iid = start(server)
    first = server.handle_event({"InstanceId": iid, "EventName": "access"})
    assert first["Data"] == {"Method": "kong.request.get_path", "Args": ()}
    last = server.step({"EventId": first["EventId"], "Data": "/mcp"})
    assert last["Data"] == "ret" and seen == ["/mcp"]
    assert settle(server)


def test_a_handler_kong_abandons_mid_event_ends_after_a_while(
    server: EventServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a Lua error in a PDK call Kong sends no further step; the handler may not wait forever."""
    monkeypatch.setattr(pluginserver, "ABANDON_AFTER", 0.2)
    Scripted.handler = staticmethod(lambda kong: kong.request.get_path())
    iid = start(server)
    first = server.handle_event({"InstanceId": iid, "EventName": "access"})
    assert first["Data"]["Method"] == "kong.request.get_path"
    assert settle(server), held(server)  # gave up after ABANDON_AFTER
    assert held(server) == (0, 0, 0)
    late = server.step({"EventId": first["EventId"], "Data": "/mcp"})  # an RPC error would make Kong proxy
    assert late["Data"]["Method"] == "kong.response.exit" and late["Data"]["Args"][0] == 503
    assert json.loads(late["Data"]["Args"][1])["error_description"] == "The gateway lost track of the request"
    assert held(server) == (0, 0, 0)


def test_a_handler_silent_past_the_budget_is_answered_503_by_the_server(server: EventServer) -> None:
    """Kong proxies when the plugin server stays silent for its read timeout: never let it."""
    release = threading.Event()
    Scripted.handler = staticmethod(lambda kong: (release.wait(10), kong.response.exit(200, "late", {})))
    server.reply_timeout = 0.2
    iid = start(server)
    answer = server.handle_event({"InstanceId": iid, "EventName": "access"})
    assert answer["Data"]["Method"] == "kong.response.exit"
    status, body, headers = answer["Data"]["Args"]
    assert status == 503 and json.loads(body)["error"] == "temporarily_unavailable"
    assert headers["Retry-After"].isdigit() and "WWW-Authenticate" not in headers
    release.set()
    assert settle(server), held(server)  # the late handler ends; its exit goes nowhere


def test_a_closed_instance_is_released_once_its_last_request_is_done(server: EventServer) -> None:
    proceed = threading.Event()
    Scripted.handler = staticmethod(lambda kong: (kong.request.get_path(), proceed.wait(5)))
    old = start(server)
    first = server.handle_event({"InstanceId": old, "EventName": "access"})
    new = start(server)  # a config change: Kong starts the new instance, then closes the old one
    server.close_instance(old)
    assert Scripted.closed == [] and held(server)[2] == 1  # a request still runs on the old one
    result: dict[str, Any] = {}
    stepper = threading.Thread(target=lambda: result.update(server.step({"EventId": first["EventId"], "Data": "/"})))
    stepper.start()
    proceed.set()
    stepper.join(5)
    assert result["Data"] == "ret"
    assert settle(server) and held(server) == (0, 0, 0)
    assert len(Scripted.closed) == 1
    server.close_instance(new)  # idle: released at once
    assert len(Scripted.closed) == 2
    with pytest.raises(Exception, match="no plugin instance"):
        server.handle_event({"InstanceId": old, "EventName": "access"})


def test_many_concurrent_events_each_get_their_own_answers(server: EventServer) -> None:
    Scripted.handler = staticmethod(lambda kong: kong.response.exit(200, kong.request.get_path(), {}))
    iid = start(server)
    wrong: list[str] = []

    def one(i: int) -> None:
        first = server.handle_event({"InstanceId": iid, "EventName": "access"})
        last = server.step({"EventId": first["EventId"], "Data": f"/{i}"})
        if last["Data"]["Args"][1] != f"/{i}":
            wrong.append(f"{i}: {last}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert wrong == [] and settle(server)


def test_a_handler_that_cannot_start_is_a_503_never_an_rpc_error(
    server: EventServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a process limit a thread may not start; an RPC error would make Kong proxy the request."""
    iid = start(server)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    answer = server.handle_event({"InstanceId": iid, "EventName": "access"})
    monkeypatch.undo()
    status, body, headers = answer["Data"]["Args"]
    assert answer["Data"]["Method"] == "kong.response.exit" and status == 503
    assert json.loads(body)["error_description"] == "The gateway is overloaded" and "Retry-After" in headers
    assert held(server) == (0, 0, 0)
    server.close_instance(iid)
    assert len(Scripted.closed) == 1  # the failed event did not keep the instance busy
