"""Behaviour §11.5 end to end: the real plugin server behind the Kong stand-in, started with
``--metrics-address``, scraped after accepted, 401, 403 and 503 requests; and without it, no listener."""

from __future__ import annotations

import os
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.stack import (
    StartKong,
    bearer,
    declarative,
    free_port,
    plugin_config,
    server_pid,
    wait_until,
)

SUBJECT = "subject-zq7-do-not-label"  # distinctive: none of these may appear in a scrape
OTHER_SUBJECT = "expired-subject-xk4"
CLIENT = "client-id-pw9"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def sample(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("threads", [False, True], ids=["gevent", "threads"])
def test_the_metrics_endpoint_counts_decisions_calls_and_lookups_without_request_data(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session, threads: bool
) -> None:
    port = free_port()
    dead_issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens: its discovery fails (503)
    config = plugin_config(authorization_servers=[authz.issuer, dead_issuer], scopes_required=["mcp:tools"])
    kong = start_kong(declarative(config), flags=f"--metrics-address 127.0.0.1:{port}", threads=threads)
    accepted = authz.mint({"sub": SUBJECT, "client_id": CLIENT})
    expired = authz.mint({"sub": OTHER_SUBJECT, "exp": int(time.time()) - 600, "iat": int(time.time()) - 900})
    unscoped = authz.mint({"sub": SUBJECT, "scope": "other"})
    unreachable = authz.mint({"sub": SUBJECT, "iss": dead_issuer})
    url = kong.proxy_url + "/mcp"
    statuses = [
        http.post(url, headers=bearer(token)).status_code
        for token in (accepted, accepted, None, expired, unscoped, unreachable)
    ]
    assert statuses == [200, 200, 401, 401, 403, 503]

    scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert scrape.status_code == 200
    text = scrape.text
    found = samples(text)

    def decided(decision: str, status: str, reason: str) -> float:
        return sample(found, "ai_mcp_oauth2_requests_total", decision=decision, status=status, reason=reason)

    assert decided("accepted", "200", "accepted") == 2
    assert decided("refused", "401", "missing_token") == 1
    assert decided("refused", "401", "expired") == 1
    assert decided("refused", "403", "insufficient_scope") == 1
    assert decided("refused", "503", "discovery") == 1
    requests_total = sum(v for (name, _), v in found.items() if name == "ai_mcp_oauth2_requests_total")
    assert requests_total == 6

    def calls(kind: str, outcome: str) -> float:
        return sample(found, "ai_mcp_oauth2_authorization_server_calls_total", kind=kind, outcome=outcome)

    assert calls("discovery", "ok") >= 1 and calls("jwks", "ok") == 1
    assert calls("discovery", "failed") >= 1  # the dead issuer, retried
    assert calls("introspection", "ok") == calls("exchange", "ok") == 0
    duration = "ai_mcp_oauth2_authorization_server_call_duration_seconds_count"
    assert sample(found, duration, kind="jwks") == 1
    assert sample(found, duration, kind="discovery") == calls("discovery", "ok") + calls("discovery", "failed")

    def lookups(cache: str, outcome: str) -> float:
        return sample(found, "ai_mcp_oauth2_cache_lookups_total", cache=cache, layer="local", outcome=outcome)

    assert lookups("tokens", "hit") >= 1  # the accepted token, the second time
    assert lookups("tokens", "miss") >= 4
    assert lookups("jwks", "miss") >= 1 and lookups("jwks", "hit") >= 1
    assert lookups("discovery", "miss") >= 2 and lookups("discovery", "hit") >= 1

    for secret in (accepted, expired, unscoped, unreachable, SUBJECT, OTHER_SUBJECT, CLIENT, "Bearer"):
        assert secret not in text
    for part in (accepted.split(".")[1], authz.issuer, dead_issuer, "127.0.0.1", "localhost"):
        assert part not in text


def listening_sockets(pid: int) -> list[str]:
    """The TCP sockets the process ``pid`` listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    listening.append(fields[1])
    return listening


def test_without_the_option_no_metrics_are_served(
    start_kong: StartKong, authz: MockAuthorizationServer, http: requests.Session
) -> None:
    kong = start_kong(declarative(plugin_config(authorization_servers=[authz.issuer])))
    assert http.post(kong.proxy_url + "/mcp", headers=bearer(authz.mint())).status_code == 200
    assert listening_sockets(server_pid(kong)) == []


def test_with_the_option_the_plugin_server_listens_where_told(
    start_kong: StartKong, authz: MockAuthorizationServer
) -> None:
    port = free_port()
    kong = start_kong(
        declarative(plugin_config(authorization_servers=[authz.issuer])), flags=f"--metrics-address 127.0.0.1:{port}"
    )
    pid = server_pid(kong)
    assert wait_until(lambda: len(listening_sockets(pid)) == 1, timeout=5)
    assert listening_sockets(pid) == [f"0100007F:{port:04X}"]
