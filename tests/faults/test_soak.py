"""A long-lived plugin server in the mode users run (the default, gevent): thousands of mixed
requests and dozens of config changes leave its memory, its handlers and its connections where
they were after warm-up. Bounds on growth, not timings.

kong-pdk's gevent mode parks a greenlet for every request the plugin answers itself (a 401, the
metadata document, a preflight): about 10 KB each, forever, with the plugin instance it holds.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from tests.harness import stack as C
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer

from .conftest import jwt_config

REQUESTS = 20_000
DRIVERS = 4
RSS_GROWTH_KIB = 12 * 1024  # the leak this guards against grew 190 MB over the same load


def socket_fds(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def held(kong: KongStandIn) -> dict[str, int]:
    status = kong.plugin_status(C.PLUGIN)
    return {
        "events": status["Events"],
        "handlers": status["Handlers"],
        "closing": status["ClosingInstances"],
        "instances": len(status["Plugins"][C.PLUGIN]["Instances"]),
    }


def mixed_requests(authz: MockAuthorizationServer, n: int) -> list[tuple[str, str, dict[str, str], int]]:
    """(method, path, headers, expected status): accepted, refused (none, forged, expired), metadata,
    preflight, a method the metadata path refuses."""
    valid = [authz.mint({"sub": f"user-{i}"}) for i in range(8)]
    forged = valid[0][:-8] + "AAAAAAAA"
    expired = authz.mint({"exp": 1000})
    kinds: list[tuple[str, str, dict[str, str], int]] = [
        ("POST", "/mcp", C.bearer(valid[0]), 200),
        ("POST", "/mcp", {}, 401),
        ("POST", "/mcp", C.bearer(forged), 401),
        ("POST", "/mcp", C.bearer(expired), 401),
        ("GET", C.METADATA_PATH, {}, 200),
        ("OPTIONS", C.METADATA_PATH, {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}, 204),
        ("POST", C.METADATA_PATH, {}, 405),
    ]
    out = []
    for i in range(n):
        method, path, headers, status = kinds[i % len(kinds)]
        if status == 200:
            headers = C.bearer(valid[i % len(valid)])
        out.append((method, path, headers, status))
    return out


def run(kong: KongStandIn, requests: list[tuple[str, str, dict[str, str], int]]) -> list[str]:
    """Drives the requests over the real plugin-server socket from DRIVERS threads; returns mismatches."""
    wrong: list[str] = []

    def driver(part: list[tuple[str, str, dict[str, str], int]]) -> None:
        for method, path, headers, expected in part:
            status, record = C.drive(kong, method, path, headers)
            if status != expected or record.failures:
                wrong.append(f"{method} {path}: {status} (expected {expected}) {record.failures}")

    threads = [threading.Thread(target=driver, args=(requests[i::DRIVERS],)) for i in range(DRIVERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wrong


@pytest.fixture
def authz() -> Any:
    server = MockAuthorizationServer(resource=C.RESOURCE)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("threads", [False, True], ids=["default-gevent", "threads"])
def test_memory_handlers_and_connections_stay_flat_over_20000_requests_and_30_config_changes(
    start_kong: C.StartKong, authz: MockAuthorizationServer, threads: bool
) -> None:
    config = jwt_config(authz)
    kong = start_kong(C.declarative(config), threads=threads)
    pid = C.server_pid(kong)
    assert run(kong, mixed_requests(authz, 2_000)) == []  # warm-up: caches, pools, allocator
    rss_before, fds_before = C.rss_kib(pid), socket_fds(pid)
    assert held(kong) == {"events": 0, "handlers": 0, "closing": 0, "instances": 1}

    assert run(kong, mixed_requests(authz, REQUESTS)) == []
    growth = C.rss_kib(pid) - rss_before
    assert growth < RSS_GROWTH_KIB, f"RSS grew {growth} KiB over {REQUESTS} requests"
    assert held(kong) == {"events": 0, "handlers": 0, "closing": 0, "instances": 1}

    # Config changes: Kong starts a new instance and closes the old one each time; the old
    # instances' handlers, connections to the authorization server and memory must go.
    for i in range(30):
        kong.reload(C.declarative({**config, "jwt_claims_leeway": i + 1}))
        assert run(kong, mixed_requests(authz, 70)) == []
    assert held(kong) == {"events": 0, "handlers": 0, "closing": 0, "instances": 1}
    assert socket_fds(pid) <= fds_before + 2, (socket_fds(pid), fds_before)
    growth = C.rss_kib(pid) - rss_before
    assert growth < RSS_GROWTH_KIB, f"RSS grew {growth} KiB after 30 config changes"
    assert C.server_errors(kong) == []
