#!/usr/bin/env python3
"""The compose `cluster` profile's two helpers (docs/cluster.md), run by scripts/cluster-sync and
scripts/cluster-check.

``sync``: loads a decK file (kong/cluster.yaml) into the control plane through its Admin API, for
machines without decK 1.28+ (``deck gateway sync kong/cluster.yaml --kong-addr URL`` does the same,
and also deletes what the file no longer has; this does not). Services and routes are upserted by
name (``PUT``), each plugin by the id of the plugin of that name already on its route or service
(else a new one), so it can be run again after editing the file. Anything else in the file is
refused rather than skipped.

``check``: the shared cache seen from outside, with the mock authorization server's request counts
(``GET /_stats``): a token used on the first data plane and then the second (and the other way
round) is introspected once; concurrent first requests on both data planes make one introspection;
a token the authorization server refuses is refused by each data plane and never shared (one
introspection per data plane). Exits 1 on the first difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = "http://127.0.0.1:8101"
DATA_PLANES = ("http://localhost:8100", "http://localhost:8200")
AUTHORIZATION_SERVER = "http://localhost:9190"
RESOURCE = "http://localhost:8100/mcp"
TIMEOUT = 30.0
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "cluster-check", "version": "1.0"},
    },
}


class Failed(Exception):
    """What the script reports before exiting 1."""


def request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """The status and the JSON answer (None when the answer is not JSON); no exception for 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"} if body is not None else {}
    sent.update(headers or {})
    call = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(call, timeout=TIMEOUT) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


# ------------------------------------------------------------------ sync


class AdminApi:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = request(method, self.base + path, body)
        if not 200 <= status < 300:
            raise Failed(f"{method} {path}: {status} {json.dumps(answer)}")
        return answer

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                status, _ = request("GET", self.base + "/status")
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise Failed(f"no answer from the Admin API at {self.base} within {seconds:g}s")
            time.sleep(2)


SERVICE_KEYS = {"routes", "plugins"}
TOP_LEVEL_KEYS = {"_format_version", "services"}


def entity(item: dict[str, Any], kind: str, nested: set[str]) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise Failed(f"every {kind} needs a name")
    return {key: value for key, value in item.items() if key not in nested}


def upsert_plugins(admin: AdminApi, scope: str, plugins: list[dict[str, Any]]) -> list[str]:
    if not plugins:
        return []
    done = []
    existing = {plugin["name"]: plugin["id"] for plugin in admin.call("GET", f"{scope}/plugins")["data"]}
    for plugin in plugins:
        body = entity(plugin, "plugin", set())
        plugin_id = existing.get(body["name"]) or str(uuid.uuid4())
        admin.call("PUT", f"{scope}/plugins/{plugin_id}", body)
        done.append(f"plugin {body['name']} on {scope.lstrip('/')} ({plugin_id})")
    return done


def sync(admin: AdminApi, state: Any) -> list[str]:
    """Loads ``state`` (a parsed decK file) into Kong; returns what it did, one line per entity."""
    if not isinstance(state, dict) or state.get("_format_version") != "3.0":
        raise Failed('not a decK file of _format_version "3.0"')
    if set(state) - TOP_LEVEL_KEYS:
        raise Failed(f"only services (with routes and plugins) are loaded, not {sorted(set(state) - TOP_LEVEL_KEYS)}")
    done = []
    for service in state.get("services") or []:
        body = entity(service, "service", SERVICE_KEYS)
        name = quote(body["name"], safe="")
        admin.call("PUT", f"/services/{name}", body)
        done.append(f"service {body['name']}")
        for route in service.get("routes") or []:
            route_body = entity(route, "route", {"plugins"})
            route_name = quote(route_body["name"], safe="")
            admin.call("PUT", f"/services/{name}/routes/{route_name}", route_body)
            done.append(f"route {route_body['name']}")
            done += upsert_plugins(admin, f"/routes/{route_name}", route.get("plugins") or [])
        done += upsert_plugins(admin, f"/services/{name}", service.get("plugins") or [])
    return done


# ------------------------------------------------------------------ check


class Cluster:
    def __init__(self, data_planes: list[str], authorization_server: str, resource: str) -> None:
        self.data_planes = [url.rstrip("/") for url in data_planes]
        self.authorization_server = authorization_server.rstrip("/")
        self.resource = resource

    def introspections(self) -> int:
        status, answer = request("GET", self.authorization_server + "/_stats")
        if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("introspection"), int):
            raise Failed(f"GET {self.authorization_server}/_stats: {status} {answer!r}")
        return int(answer["introspection"])

    def token(self, name: str) -> str:
        claims = {"aud": self.resource, "sub": name, "scope": "mcp:tools"}
        status, answer = request("POST", self.authorization_server + "/_opaque", claims)
        if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
            raise Failed(f"POST {self.authorization_server}/_opaque: {status} {answer!r}")
        return str(answer["access_token"])

    def call(self, data_plane: str, token: str) -> int:
        """An MCP ``initialize`` through a data plane with the token: the status."""
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
        return request("POST", data_plane + "/mcp", INITIALIZE, headers)[0]

    def expect(self, what: str, before: int, calls: int, statuses: list[int], status: int) -> str:
        made = self.introspections() - before
        if any(code != status for code in statuses):
            raise Failed(f"{what}: statuses {statuses}, expected {status} from every data plane")
        if made != calls:
            raise Failed(f"{what}: {made} introspections, expected {calls}")
        return f"ok  {what}: {len(statuses)} requests, {statuses[0]} each, {made} introspection(s)"

    def check(self, concurrent: int) -> list[str]:
        done = []
        first, *others = self.data_planes
        for order in (self.data_planes, [*others, first]):
            token = self.token("cluster-check")
            before = self.introspections()
            statuses = []
            for position, data_plane in enumerate(order):
                statuses += [self.call(data_plane, token), self.call(data_plane, token)]
                names = " then ".join(order[: position + 1])
                done.append(self.expect(f"one token on {names}", before, 1, statuses, 200))
        token = self.token("cluster-check-concurrent")
        before = self.introspections()
        targets = [data_plane for _ in range(concurrent) for data_plane in self.data_planes]
        with ThreadPoolExecutor(len(targets)) as pool:
            statuses = list(pool.map(lambda data_plane: self.call(data_plane, token), targets))
        what = f"one new token, {concurrent} concurrent requests per data plane"
        done.append(self.expect(what, before, 1, statuses, 200))
        refused = "unknown-" + uuid.uuid4().hex
        before = self.introspections()
        statuses = [self.call(data_plane, refused) for data_plane in self.data_planes]
        done.append(self.expect("a token the authorization server refuses", before, len(statuses), statuses, 401))
        return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("sync", help="load a decK file into the control plane through its Admin API")
    load.add_argument("file", nargs="?", type=Path, default=ROOT / "kong" / "cluster.yaml")
    load.add_argument("--admin-url", default=ADMIN_URL, help=f"the control plane's Admin API (default {ADMIN_URL})")
    load.add_argument("--wait", type=float, default=120, help="seconds to wait for the Admin API (default 120)")
    verify = commands.add_parser("check", help="one introspection per token across the data planes")
    planes = ", ".join(DATA_PLANES)
    verify.add_argument("--data-plane", action="append", help=f"a data plane's proxy, repeated (default: {planes})")
    verify.add_argument("--authorization-server", default=AUTHORIZATION_SERVER)
    verify.add_argument("--resource", default=RESOURCE, help="the resource of kong/cluster.yaml (the tokens' aud)")
    verify.add_argument("--concurrent", type=int, default=5, help="concurrent first requests per data plane")
    args = parser.parse_args(argv)
    try:
        if args.command == "sync":
            import yaml  # the test extra's PyYAML (scripts/cluster-sync runs in ./.venv)

            admin = AdminApi(args.admin_url)
            admin.wait(args.wait)
            lines = sync(admin, yaml.safe_load(args.file.read_text()))
        else:
            cluster = Cluster(args.data_plane or list(DATA_PLANES), args.authorization_server, args.resource)
            if len(cluster.data_planes) < 2:
                raise Failed("a cluster check needs two data planes or more")
            lines = cluster.check(args.concurrent)
    except (Failed, OSError) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
