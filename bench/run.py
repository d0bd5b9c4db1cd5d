"""The benchmark behind ``scripts/bench`` (behaviour §11). Not a test: run it, read the table.

Every request goes through the Kong stand-in (router, PDK semantics, MsgPack RPC over the real
Unix socket) to the real plugin server, driven by :func:`tests.harness.stack.drive`: the stand-in's
access phase without its HTTP listener and upstream, so the numbers are the plugin server's and
the RPC's, not the stand-in's HTTP stack. In the same run, for each kind of request, the floor
(``bench/floor.py``, a no-op kong-pdk plugin replaying exactly the PDK calls the plugin
made) runs interleaved with the plugin, so ``plugin / floor`` is the plugin's own overhead.

Writes ``docs/bench/results.json`` and ``docs/bench/latency.png`` (matplotlib; the run says so
and skips the picture when it is missing), and the results table into README.md between the
lines ``<!-- bench:results -->`` and ``<!-- /bench:results -->`` (a run stops at once when they
are missing). ``--quick`` runs smaller counts (a smoke run into a temporary directory; its
results are not committed and the README is left alone); ``--only WORD`` measures only the kinds
and sections whose names contain WORD, the same way (no targets, no README).

The cluster cache (behaviour §13) is measured on two nodes, each a stand-in with its own plugin
server (``Bench.node_a`` and the plugin's stand-in as node B), sharing one real ``redis-server``:
a token first seen on B after A introspected it (a Redis hit) against one first seen on a node
without the cluster cache (an authorization-server call), and the authorization-server calls one
new token costs under 50 concurrent requests on the two nodes, with and without Redis.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms

from kong_plugins.ai_mcp_oauth2.cache import MAX_ENTRIES
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.tokens import CachingTokenVerifier
from tests.harness import stack as C
from tests.harness.dpop_proofs import ProofKey, dpop_headers
from tests.harness.kong_standin import KongStandIn
from tests.harness.kong_standin.records import RequestRecord
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.redis_server import RedisServer

OUT = C.ROOT / "docs" / "bench"
README = C.ROOT / "README.md"
FLOOR = "bench-floor"
FLOOR_SCRIPT = Path(__file__).resolve().parent / "floor.py"
SECRET = "kong-secret"
#: A request for :func:`tests.harness.stack.drive`: method, path, headers and, optionally, the body.
Request = tuple[str, str, dict[str, str]] | tuple[str, str, dict[str, str], bytes]
#: A permitted MCP 2026-07-28 tool call (behaviour §12): its JSON-RPC body and its routing headers.
TOOL_CALL = json.dumps({
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "read_file", "arguments": {"path": "README.md"}},
}).encode()  # fmt: skip
ROUTING_HEADERS = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "read_file"}
#: Scopes per MCP operation (behaviour §12.2): the route needs ``mcp``, any tool call ``tools``.
OPERATIONS = [
    {"method": "tools/call", "scopes_required": ["tools"]},
    {"method": "tools/call", "name": "delete_repo", "scopes_required": ["repo:admin"]},
]


# --------------------------------------------------------------------------------------------- floor
def floor_env(prefix: Path, threads: bool = False) -> dict[str, str]:
    """Kong's settings for the floor (bench/floor.py) as a dedicated kong-pdk plugin server."""
    flags = "" if threads else " -g"  # kong-pdk: thread mode, or gevent (-g, patched by floor.py)
    return {
        "KONG_PREFIX": str(prefix),
        "KONG_PLUGINS": f"bundled,{FLOOR}",
        "KONG_PLUGINSERVER_NAMES": FLOOR,
        "KONG_PLUGINSERVER_BENCH_FLOOR_SOCKET": f"{prefix}/{FLOOR}.socket",
        "KONG_PLUGINSERVER_BENCH_FLOOR_START_CMD": (
            f"{sys.executable} {FLOOR_SCRIPT} --kong-prefix {prefix} --socket-name {FLOOR}.socket --no-lua-style{flags}"
        ),
        "KONG_PLUGINSERVER_BENCH_FLOOR_QUERY_CMD": f"{sys.executable} {FLOOR_SCRIPT} --dump",
    }


def start_floor(prefix: Path, threads: bool = False) -> KongStandIn:
    """The stand-in with the floor on the route, replaying nothing until :meth:`Bench.set_floor`."""
    prefix.mkdir(parents=True, exist_ok=True)
    return C.start(prefix, C.declarative({"script": "[]"}, name=FLOOR), env=floor_env(prefix, threads))


def replay_script(record: RequestRecord) -> str:
    """The PDK calls of a request as the floor plugin's ``script``."""
    return json.dumps([[c.method, c.args] for c in record.pdk_calls])


# --------------------------------------------------------------------------------------------- stats
def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(lat_us: list[float]) -> dict[str, float]:
    return {
        "n": len(lat_us),
        "median_us": round(statistics.median(lat_us), 1),
        "p99_us": round(pct(lat_us, 99), 1),
        "mean_us": round(statistics.fmean(lat_us), 1),
    }


def timed(kong: KongStandIn, request: Request) -> tuple[float, int]:
    t0 = time.perf_counter()
    status, _ = C.drive(kong, *request)
    return (time.perf_counter() - t0) * 1e6, status


def concurrent_run(kong: KongStandIn, requests_: list[Request], concurrency: int, budget_s: float) -> dict[str, Any]:
    """``requests_`` split over ``concurrency`` threads; bounded by count and by ``budget_s``."""
    deadline = time.monotonic() + budget_s
    chunks = [requests_[i::concurrency] for i in range(concurrency)]
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(chunk: list[Request]) -> None:
        mine: list[int] = []
        for request in chunk:
            if time.monotonic() > deadline:
                break
            mine.append(C.drive(kong, *request)[0])
        with lock:
            statuses.extend(mine)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, chunks))
    elapsed = time.perf_counter() - t0
    return {
        "requests": len(statuses),
        "seconds": round(elapsed, 3),
        "rps": round(len(statuses) / elapsed, 1),
        "statuses": sorted(set(statuses)),
    }


# --------------------------------------------------------------------------------------------- setup
class Bench:
    def __init__(self, quick: bool, tmp: Path) -> None:
        self.quick = quick
        self.tmp = tmp
        self.rounds = 3 if quick else 6
        self.block = 60 if quick else 150
        self.c16 = 320 if quick else 1600
        self.authz = MockAuthorizationServer(resource=C.RESOURCE).start()
        self.authz.add_client("kong", "client_secret_basic", secret=SECRET)
        issuer = self.authz.issuer
        scoped: dict[str, Any] = {
            "authorization_servers": [issuer],
            "claim_to_header": [{"claim": "sub", "header": "X-User"}],
            "scopes_required": ["mcp"],
            "mcp_operations": OPERATIONS,
        }
        self.configs = {
            "jwt": C.plugin_config(
                authorization_servers=[issuer], claim_to_header=[{"claim": "sub", "header": "X-User"}]
            ),
            "scopes, trusted headers": C.plugin_config(**scoped, mcp_trust_routing_headers=True),
            "scopes, body": C.plugin_config(**scoped),
            "introspection": C.plugin_config(
                authorization_servers=[issuer],
                claim_to_header=[{"claim": "sub", "header": "X-User"}],
                introspection_endpoint=self.authz.introspection_endpoint,
                client_id="kong",
                client_secret=SECRET,
            ),
            "exchange": C.plugin_config(
                authorization_servers=[issuer],
                passthrough_credentials=True,
                claim_to_header=[{"claim": "sub", "header": "X-User"}],
                token_exchange={
                    "enabled": True,
                    "token_endpoint": self.authz.token_endpoint,
                    "client_id": "kong",
                    "client_secret": SECRET,
                },
            ),
        }
        # behaviour §14: DPoP optional, a bound token presented with a proof
        self.configs["jwt, DPoP"] = {**self.configs["jwt"], "proof_of_possession_dpop": "optional"}
        self.configs["introspection+exchange"] = {
            **self.configs["introspection"],
            "passthrough_credentials": True,
            "token_exchange": self.configs["exchange"]["token_exchange"],
        }
        # behaviour §13: the same configs sharing their answers through one real redis-server
        self.redis = RedisServer().start()
        shared = {
            "cluster_cache_strategy": "redis",
            "cluster_cache_redis": {"host": "127.0.0.1", "port": self.redis.port},
        }
        for name in ("introspection", "introspection+exchange"):
            self.configs[f"{name}, Redis"] = {**self.configs[name], **shared}
        self.config_name = "jwt"
        self.plugin = C.start(tmp / "plugin", C.declarative(self.configs["jwt"]))
        self.floor = start_floor(tmp / "floor")
        self.floor_decode = start_floor(tmp / "floor-decode")
        # node A of a two-node cluster whose node B is self.plugin: its own stand-in and plugin server
        self.node_a = C.start(tmp / "node-a", C.declarative(self.configs["introspection, Redis"]))
        self.kongs: list[KongStandIn] = [self.plugin, self.floor, self.floor_decode, self.node_a]

    def close(self) -> None:
        for kong in self.kongs:
            kong.stop()
        self.authz.stop()
        self.redis.close()

    def use(self, name: str) -> None:
        """A fresh plugin instance with the named config (a reload: new instance, empty caches)."""
        self.plugin.reload(C.declarative(self.configs[name]))
        self.config_name = name

    def set_floor(self, kong: KongStandIn, config: dict[str, Any]) -> None:
        kong.reload(C.declarative(config, name=FLOOR))

    def as_calls(self) -> dict[str, int]:
        return {e: self.authz.count(e) for e in ("metadata", "jwks", "introspection", "token")}

    def mint(self, n: int, alg: str = "RS256", **kwargs: Any) -> list[str]:
        return [self.authz.mint(alg=alg, **kwargs) for _ in range(n)]

    def opaque(self, n: int) -> list[str]:
        """``n`` new opaque tokens, active at the mock's introspection endpoint."""
        return [self.authz.issue_opaque({"sub": f"opaque-{i}"}) for i in range(n)]

    def seen_on_node_a(self, n: int) -> list[str]:
        """``n`` new opaque tokens, each introspected once through node A (so in Redis), none seen by
        node B: on B each is a local miss and a Redis hit. Node A's introspections happen here,
        before any counting or timing."""
        tokens = self.opaque(n)
        run = concurrent_run(self.node_a, [("POST", "/mcp", C.bearer(t)) for t in tokens], 4, 600)
        if run["requests"] != n or run["statuses"] != [200]:
            raise SystemExit(f"node A did not accept the {n} tokens it introspects for node B: {run}")
        return tokens

    def pem(self, alg: str) -> str:
        from cryptography.hazmat.primitives import serialization

        key = self.authz.current_key(alg).public_key
        pem: bytes = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return pem.decode()


# --------------------------------------------------------------------------------------------- kinds
def kinds(b: Bench) -> list[dict[str, Any]]:
    """Each kind: its config and its request: ``fixed`` (the same request every time), ``fresh`` (a
    new JWT of that algorithm per request, with a floor that also decodes it: the §11 yardstick),
    ``tokens`` (``tokens(n)``: ``n`` new tokens, one per request) or ``make`` (``make()``: a new
    request each time, such as one with a fresh DPoP proof)."""
    forged = b.authz.mint().rsplit(".", 1)[0] + ".AAAA"  # well formed, wrong signature: verified every time
    repeated = b.authz.mint()
    opaque = b.authz.issue_opaque({"sub": "opaque-user"})
    exchanged = b.authz.mint()
    # behaviour §14: one bound token, repeated, and a new proof (new jti, iat now) for every request
    proof_key = ProofKey("ES256")
    bound = b.authz.mint({"cnf": {"jkt": proof_key.jkt}})
    htu = f"http://127.0.0.1:{b.plugin.port}/mcp"  # what the plugin sees under C.drive (Host, server port)

    def dpop_request() -> Request:
        return ("POST", "/mcp", dpop_headers(bound, proof_key.proof("POST", htu, bound)))

    # behaviour §12: the same tool call classified from its trusted routing headers (no round trip)
    # or from its body (one get_raw_body round trip, which the floor replays too)
    tool_call = ("POST", "/mcp", {**C.bearer(b.authz.mint({"scope": "mcp tools"})), **ROUTING_HEADERS}, TOOL_CALL)
    return [
        {"name": "metadata", "config": "jwt", "fixed": ("GET", C.METADATA_PATH, {})},
        {"name": "rejected: no token", "config": "jwt", "fixed": ("POST", "/mcp", {})},
        {"name": "rejected: bad token", "config": "jwt", "fixed": ("POST", "/mcp", C.bearer(forged))},
        {"name": "JWT first seen RS256", "config": "jwt", "fresh": "RS256"},
        {"name": "JWT first seen ES256", "config": "jwt", "fresh": "ES256"},
        {"name": "JWT repeated", "config": "jwt", "fixed": ("POST", "/mcp", C.bearer(repeated))},
        {"name": "JWT repeated, DPoP", "config": "jwt, DPoP", "make": dpop_request},
        {"name": "introspection cached", "config": "introspection", "fixed": ("POST", "/mcp", C.bearer(opaque))},
        # behaviour §13: first seen on node B (b.plugin) after node A introspected it: one Redis round trip
        {"name": "introspection, Redis hit", "config": "introspection, Redis", "tokens": b.seen_on_node_a},
        # first seen on a node without the cluster cache: one call to the (mock) authorization server
        {"name": "introspection, no Redis", "config": "introspection", "tokens": b.opaque},
        {"name": "exchange cached", "config": "exchange", "fixed": ("POST", "/mcp", C.bearer(exchanged))},
        {"name": "tool call, trusted headers", "config": "scopes, trusted headers", "fixed": tool_call},
        {"name": "tool call, body read", "config": "scopes, body", "fixed": tool_call},
    ]


def measure_kind(b: Bench, kind: dict[str, Any]) -> dict[str, Any]:
    b.use(kind["config"])
    fresh = kind.get("fresh")
    total = 60 + b.rounds * b.block + b.c16
    new_tokens: Callable[[int], list[str]] | None = kind.get("tokens")
    tokens = iter(b.mint(total, fresh)) if fresh else iter(new_tokens(total)) if new_tokens else None
    make: Callable[[], Request] | None = kind.get("make")

    def request() -> Request:
        if tokens is not None:
            return ("POST", "/mcp", C.bearer(next(tokens)))
        if make is not None:
            return make()
        fixed: Request = kind["fixed"]
        return fixed

    # warm-up: the JWKS, metadata, introspection and exchange caches fill here (counted apart)
    warm_before = b.as_calls()
    first: Any = None
    for _ in range(20):
        status, record = C.drive(b.plugin, *request())
        first = first or record
    sample_status, sample = status, record
    script = replay_script(sample)
    b.set_floor(b.floor, {"script": script})
    decode = fresh is not None
    if fresh is not None:
        b.set_floor(
            b.floor_decode,
            {
                "script": script,
                "decode_key": b.pem(fresh),
                "decode_alg": fresh,
                "audience": C.RESOURCE,
                "issuer": b.authz.issuer,
            },
        )
    for kong in [b.floor] + ([b.floor_decode] if decode else []):
        for _ in range(20):
            C.drive(kong, *request())
    lat: dict[str, list[float]] = {"plugin": [], "floor": [], "floor+decode": []}
    statuses: dict[str, set[int]] = {k: set() for k in lat}
    before = b.as_calls()
    warmup_calls = {k: before[k] - warm_before[k] for k in before if before[k] != warm_before[k]}
    for _ in range(b.rounds):
        requests_ = [request() for _ in range(b.block)]
        targets = [("plugin", b.plugin), ("floor", b.floor)] + ([("floor+decode", b.floor_decode)] if decode else [])
        for label, kong in targets:
            gc.collect()
            for req in requests_:
                us, status = timed(kong, req)
                lat[label].append(us)
                statuses[label].add(status)
    after = b.as_calls()
    n = len(lat["plugin"])
    result: dict[str, Any] = {
        "config": kind["config"],
        "status": sorted(statuses["plugin"]),
        "floor_status": sorted(statuses["floor"]),
        "pdk_round_trips": sample.round_trips,
        "pdk_calls": [c.method for c in sample.pdk_calls],
        "as_calls_per_request": {k: round((after[k] - before[k]) / n, 4) for k in after if after[k] != before[k]},
        "plugin": summary(lat["plugin"]),
        "floor": summary(lat["floor"]),
        "as_calls_warmup_20_requests": warmup_calls,
        "first_request_status": first.status,
        "sample_status": sample_status,
    }
    if decode:
        result["floor+decode"] = summary(lat["floor+decode"])
    result["plugin"]["rps_c1"] = round(1e6 / result["plugin"]["mean_us"], 1)
    result["floor"]["rps_c1"] = round(1e6 / result["floor"]["mean_us"], 1)
    result["ratio_median"] = round(result["plugin"]["median_us"] / result["floor"]["median_us"], 3)
    # concurrency 16: plugin then floor, the same requests (fresh tokens for the plugin)
    budget = 30.0
    reqs = [request() for _ in range(b.c16)]
    result["plugin"]["c16"] = concurrent_run(b.plugin, reqs, 16, budget)
    result["floor"]["c16"] = concurrent_run(b.floor, reqs, 16, budget)
    result["samples_us"] = {k: [round(v, 1) for v in vals] for k, vals in lat.items() if vals}
    return result


# --------------------------------------------------------------------------------------------- in process
def in_process(b: Bench) -> dict[str, Any]:
    """PyJWT's bare decode with the key in hand, the plugin's own first-seen validation, and
    CachingTokenVerifier.verify on a cached token, all in this process with time.perf_counter."""
    out: dict[str, Any] = {}
    algorithms = get_default_algorithms()
    b.use("jwt")
    config = parse_config(json.loads(b.plugin.config.decl.plugins[0].config_json))
    n = 300 if b.quick else 1000
    for alg in ("RS256", "ES256"):
        key = algorithms[alg].prepare_key(b.pem(alg))
        tokens = b.mint(n, alg)
        times = []
        for token in tokens:
            t0 = time.perf_counter()
            jwt.decode(token, key, algorithms=[alg], audience=C.RESOURCE, issuer=b.authz.issuer)
            times.append((time.perf_counter() - t0) * 1e6)
        validator = CachingTokenVerifier(config)
        validator.verify(b.authz.mint(alg=alg))  # JWKS + metadata fetched
        own = []
        for token in b.mint(n, alg):
            t0 = time.perf_counter()
            validator.verify(token)
            own.append((time.perf_counter() - t0) * 1e6)
        out[f"pyjwt_decode_{alg}"] = summary(times)
        out[f"plugin_first_seen_{alg}"] = summary(own)
    validator = CachingTokenVerifier(config)
    token = b.authz.mint()
    validator.verify(token)
    iterations = 200_000 if not b.quick else 50_000
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iterations):
            validator.verify(token)
        runs.append((time.perf_counter() - t0) / iterations * 1e6)
    out["verify_cached_us"] = {
        "runs": [round(r, 3) for r in runs],
        "median": round(statistics.median(runs), 3),
        "iterations_per_run": iterations,
    }
    return out


# --------------------------------------------------------------------------------------------- load cases
def burst(nodes: tuple[KongStandIn, ...], token: str, n: int) -> list[int]:
    """``n`` requests with ``token`` released at once, spread evenly over ``nodes``: their statuses."""
    barrier = threading.Barrier(n)

    def one(i: int) -> int:
        barrier.wait(10)
        return C.drive(nodes[i % len(nodes)], "POST", "/mcp", C.bearer(token))[0]

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def single_flight(b: Bench) -> dict[str, Any]:
    """50 concurrent requests with one new token on an introspection + exchange config."""
    b.use("introspection+exchange")
    C.drive(b.plugin, "GET", C.METADATA_PATH)  # the instance exists before the burst
    b.authz.slow_seconds = 0.5
    b.authz.fault("introspection", "slow", count=1)
    b.authz.fault("token", "slow", count=1)
    token = b.authz.mint({"sub": "burst"})  # a JWT: the mock introspects it and accepts it as subject token
    before = b.as_calls()
    statuses = burst((b.plugin,), token, 50)
    after = b.as_calls()
    b.authz.fault("introspection", None)
    b.authz.fault("token", None)
    b.authz.slow_seconds = 2.0
    return {
        "requests": 50,
        "statuses": {str(s): statuses.count(s) for s in set(statuses)},
        "introspection_calls": after["introspection"] - before["introspection"],
        "exchange_calls": after["token"] - before["token"],
    }


def cluster(b: Bench) -> dict[str, Any]:
    """Two nodes (node A and b.plugin, each its own stand-in and plugin server), 50 concurrent
    requests with one new token, 25 on each, on the introspection + exchange config without and
    with the cluster cache: authorization-server calls for that token (behaviour §13.2)."""
    out: dict[str, Any] = {"nodes": 2, "requests": 50, "per_node": 25}
    for label, name in (("without_redis", "introspection+exchange"), ("with_redis", "introspection+exchange, Redis")):
        b.use(name)
        b.node_a.reload(C.declarative(b.configs[name]))
        nodes = (b.node_a, b.plugin)
        for kong in nodes:
            C.drive(kong, "GET", C.METADATA_PATH)  # the instances exist before the burst
        # each call the first requests make takes 0.5 s, so that every request arrives while it runs
        b.authz.slow_seconds = 0.5
        b.authz.fault("introspection", "slow", count=2)
        b.authz.fault("token", "slow", count=2)
        token = b.authz.mint({"sub": f"cluster-{label}"})  # the mock introspects a JWT and exchanges it
        before = b.as_calls()
        statuses = burst(nodes, token, 50)
        after = b.as_calls()
        b.authz.fault("introspection", None)
        b.authz.fault("token", None)
        b.authz.slow_seconds = 2.0
        out[label] = {
            "statuses": {str(s): statuses.count(s) for s in set(statuses)},
            "introspection_calls": after["introspection"] - before["introspection"],
            "exchange_calls": after["token"] - before["token"],
        }
    b.node_a.reload(C.declarative(b.configs["introspection, Redis"]))
    return out


def kid_flood(b: Bench) -> dict[str, Any]:
    """Tokens with unknown kids, as fast as 4 threads can send them, for 10.5 s (at most 20 000)."""
    b.use("jwt")
    assert C.drive(b.plugin, "POST", "/mcp", C.bearer(b.authz.mint()))[0] == 200
    duration = 4.0 if b.quick else 10.5
    key = b.authz.current_key("RS256")
    tokens = [b.authz.mint(key=key, kid=f"unknown-{i}") for i in range(400)]
    before = b.as_calls()
    statuses: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def worker(offset: int) -> None:
        mine: list[int] = []
        i = offset
        while time.monotonic() < deadline and len(mine) < 5000:
            mine.append(C.drive(b.plugin, "POST", "/mcp", C.bearer(tokens[i % len(tokens)]))[0])
            i += 4
        with lock:
            statuses.extend(mine)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 30)
    elapsed = time.monotonic() - t0
    fetches = b.as_calls()["jwks"] - before["jwks"]
    return {
        "requests": len(statuses),
        "seconds": round(elapsed, 2),
        "jwks_fetches": fetches,
        "allowed": 1 + int(elapsed // 10),
        "statuses": {str(s): statuses.count(s) for s in set(statuses)},
    }


def slow_as(b: Bench, kong: KongStandIn, waiting: int, slow_s: float, label: str) -> dict[str, Any]:
    """Cached-token latency idle, then while ``waiting`` requests wait on an introspection endpoint
    that takes ``slow_s``: does a slow authorization server block anyone else?"""
    kong.reload(C.declarative(b.configs["introspection"]))
    cached = b.authz.issue_opaque({"sub": "cached"})
    assert C.drive(kong, "POST", "/mcp", C.bearer(cached))[0] == 200
    idle = [timed(kong, ("POST", "/mcp", C.bearer(cached)))[0] for _ in range(600 if not b.quick else 200)]
    b.authz.slow_seconds = slow_s
    b.authz.fault("introspection", "slow")
    new_tokens = [b.authz.issue_opaque({"sub": f"waiting-{i}"}) for i in range(waiting)]
    waiting_status: list[int] = []
    pool = concurrent.futures.ThreadPoolExecutor(waiting)
    futures = [pool.submit(C.drive, kong, "POST", "/mcp", C.bearer(t)) for t in new_tokens]
    time.sleep(0.2)  # the waiting requests are at the authorization server
    busy: list[float] = []
    window_end = time.monotonic() + slow_s * 0.7
    while time.monotonic() < window_end and len(busy) < 3000:
        busy.append(timed(kong, ("POST", "/mcp", C.bearer(cached)))[0])
    for f in futures:
        waiting_status.append(f.result(timeout=120)[0])
    pool.shutdown()
    b.authz.fault("introspection", None)
    b.authz.slow_seconds = 2.0
    idle_s, busy_s = summary(idle), summary(busy)
    return {
        "mode": label,
        "waiting": waiting,
        "slow_seconds": slow_s,
        "idle": idle_s,
        "while_waiting": busy_s,
        "p99_ratio": round(busy_s["p99_us"] / idle_s["p99_us"], 2),
        "max_while_waiting_us": round(max(busy), 1),
        "waiting_statuses": {str(s): waiting_status.count(s) for s in set(waiting_status)},
    }


def memory(b: Bench) -> dict[str, Any]:
    """Distinct tokens through the socket (RSS of the plugin server sampled), then 100 000 in process."""
    b.use("jwt")
    pid = C.server_pid(b.plugin)
    through_socket = 6000 if b.quick else 24000
    step = 2000
    C.drive(b.plugin, "POST", "/mcp", C.bearer(b.authz.mint(alg="ES256")))
    gc.collect()
    samples = [{"tokens": 0, "rss_kib": C.rss_kib(pid)}]
    deadline = time.monotonic() + 120
    done = 0
    while done < through_socket and time.monotonic() < deadline:
        tokens = b.mint(step, "ES256", claims={"exp": int(time.time()) + 3600})
        run = concurrent_run(b.plugin, [("POST", "/mcp", C.bearer(t)) for t in tokens], 4, 60)
        done += run["requests"]
        samples.append({"tokens": done, "rss_kib": C.rss_kib(pid), "statuses": run["statuses"]})
    # In process: a real CachingTokenVerifier (keys from the mock), 100 000 distinct EdDSA tokens.
    config = parse_config(json.loads(b.plugin.config.decl.plugins[0].config_json))
    validator = CachingTokenVerifier(config)
    count = 20000 if b.quick else 100_000
    gc.collect()
    rss0 = C.rss_kib(os.getpid())
    inproc = [{"tokens": 0, "rss_kib": rss0, "cache_entries": 0}]
    t0 = time.monotonic()
    i = 0
    while i < count and time.monotonic() - t0 < 150:
        for token in b.mint(5000, "EdDSA", claims={"exp": int(time.time()) + 3600}):
            validator.verify(token)
        i += 5000
        gc.collect()
        inproc.append({"tokens": i, "rss_kib": C.rss_kib(os.getpid()), "cache_entries": len(validator.cache)})
    return {
        "cache_max_entries": MAX_ENTRIES,
        "through_socket": samples,
        "in_process": inproc,
        "in_process_seconds": round(time.monotonic() - t0, 1),
        "refused": refused(b, pid),
    }


def refused(b: Bench, pid: int) -> list[dict[str, Any]]:
    """Requests the plugin answers itself (no token, metadata), sampled: RSS and handlers left."""
    reqs: list[Request] = [("POST", "/mcp", {}), ("GET", C.METADATA_PATH, {})]
    total = 6000 if b.quick else 30000
    samples: list[dict[str, Any]] = [{"requests": 0, "rss_kib": C.rss_kib(pid), "handlers": 0}]
    done = 0
    while done < total:
        run = concurrent_run(b.plugin, reqs * 2500, 4, 60)
        done += run["requests"]
        status = b.plugin.plugin_status(C.PLUGIN)
        samples.append({"requests": done, "rss_kib": C.rss_kib(pid), "handlers": status["Handlers"]})
    return samples


def modes(b: Bench) -> dict[str, Any]:
    """Repeated JWT: the default gevent mode against kong-pdk's thread mode (--threads), interleaved;
    floors in each mode."""
    gevent, floor_g = b.plugin, b.floor
    thread = C.start(b.tmp / "plugin-threads", C.declarative(b.configs["jwt"]), threads=True)
    b.kongs.append(thread)
    floor_t = start_floor(b.tmp / "floor-threads", threads=True)
    b.kongs.append(floor_t)
    b.use("jwt")
    token = b.authz.mint()
    req = ("POST", "/mcp", C.bearer(token))
    _, record = C.drive(gevent, *req)
    C.drive(thread, *req)
    b.set_floor(floor_t, {"script": replay_script(record)})
    b.set_floor(floor_g, {"script": replay_script(record)})
    targets = {"thread": thread, "gevent": gevent, "floor thread": floor_t, "floor gevent": floor_g}
    lat: dict[str, list[float]] = {k: [] for k in targets}
    for kong in targets.values():
        for _ in range(20):
            C.drive(kong, *req)
    for _ in range(b.rounds):
        for label, kong in targets.items():
            for _ in range(b.block):
                lat[label].append(timed(kong, req)[0])
    out: dict[str, Any] = {k: summary(v) for k, v in lat.items()}
    for label, kong in targets.items():
        out[label]["c16"] = concurrent_run(kong, [req] * b.c16, 16, 30)
    out["faster"] = "gevent" if out["gevent"]["median_us"] < out["thread"]["median_us"] else "thread"
    out["thread_slow_as"] = slow_as(b, thread, waiting=20, slow_s=2.0, label="thread")
    return out


# --------------------------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import kong_pdk.const

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kong_pdk": kong_pdk.const.__version__,
        "pyjwt": jwt.__version__,
    }


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    k = res["kinds"]
    out = []

    def add(name: str, target: str, measured: str, met: bool, note: str = "") -> None:
        out.append({"target": name, "goal": target, "measured": measured, "met": met, "note": note})

    rep = k["JWT repeated"]
    add(
        "repeated JWT vs floor",
        "median <= 1.15 x floor",
        f"{rep['plugin']['median_us']} us / {rep['floor']['median_us']} us = {rep['ratio_median']} x",
        rep["ratio_median"] <= 1.15,
    )
    first = k["JWT first seen RS256"]
    floor_med = first["floor"]["median_us"]
    yard = first["floor+decode"]["median_us"] - floor_med
    bare = res["in_process"]["pyjwt_decode_RS256"]["median_us"]
    plugin_med = first["plugin"]["median_us"]
    limit_yard, limit_bare = floor_med + 1.3 * yard, floor_med + 1.3 * bare
    add(
        "first-seen RS256 vs floor + 1.3 x decode (in-server yardstick, behaviour §11)",
        "median <= floor + 1.3 x (floor+decode - floor)",
        f"{plugin_med} us <= {floor_med} + 1.3 x {round(yard, 1)} = {round(limit_yard, 1)} us",
        plugin_med <= limit_yard,
    )
    add(
        "first-seen RS256 vs floor + 1.3 x bare in-process PyJWT decode",
        "median <= floor + 1.3 x bare decode",
        f"{plugin_med} us <= {floor_med} + 1.3 x {bare} = {round(limit_bare, 1)} us",
        plugin_med <= limit_bare,
        "the bare decode is a hot in-process loop; behaviour §11 calls this comparison unfair",
    )
    v = res["in_process"]["verify_cached_us"]["median"]
    add("CachingTokenVerifier.verify on a cached token, in process", "<= 5 us", f"{v} us", v <= 5)
    base = rep["pdk_round_trips"]
    hdr, body = k["tool call, trusted headers"], k["tool call, body read"]
    raw = "kong.request.get_raw_body"
    add(
        "permitted tool call with per-operation scopes: PDK round trips vs repeated JWT (behaviour §12.5)",
        "trusted headers +0, body read +1 (get_raw_body)",
        f"repeated JWT {base}, trusted headers {hdr['pdk_round_trips']} (+{hdr['pdk_round_trips'] - base}), "
        f"body read {body['pdk_round_trips']} (+{body['pdk_round_trips'] - base}); "
        f"statuses {hdr['status']}, {body['status']}",
        hdr["pdk_round_trips"] == base
        and body["pdk_round_trips"] == base + 1
        and raw not in hdr["pdk_calls"]
        and body["pdk_calls"].count(raw) == 1
        and hdr["status"] == body["status"] == [200],
    )
    dp = k["JWT repeated, DPoP"]
    add(
        "DPoP request (repeated bound JWT, a fresh proof each): PDK round trips vs repeated JWT (behaviour §14.5)",
        "at most +6 (method, forwarded scheme, host and port, removing DPoP), every request 200",
        f"repeated JWT {base}, DPoP {dp['pdk_round_trips']} (+{dp['pdk_round_trips'] - base}), status {dp['status']}; "
        f"{dp['plugin']['median_us']} us vs floor {dp['floor']['median_us']} us = {dp['ratio_median']} x",
        dp["pdk_round_trips"] <= base + 6 and dp["status"] == [200],
    )
    sf = res["single_flight"]
    add(
        "50 concurrent requests, one new token",
        "1 introspection, 1 exchange",
        f"{sf['introspection_calls']} introspection, {sf['exchange_calls']} exchange, statuses {sf['statuses']}",
        sf["introspection_calls"] == 1 and sf["exchange_calls"] == 1 and sf["statuses"] == {"200": 50},
    )
    cl = res["cluster"]
    on, off = cl["with_redis"], cl["without_redis"]
    add(
        "2 nodes x 50 concurrent requests (25 each), one new token: authorization-server calls (behaviour §13.2)",
        "with Redis 1 introspection, 1 exchange; without, one of each per node (2, 2)",
        f"with Redis {on['introspection_calls']} introspection, {on['exchange_calls']} exchange, statuses "
        f"{on['statuses']}; without {off['introspection_calls']}, {off['exchange_calls']}, statuses {off['statuses']}",
        (on["introspection_calls"], on["exchange_calls"], off["introspection_calls"], off["exchange_calls"])
        == (1, 1, 2, 2)
        and on["statuses"] == off["statuses"] == {"200": 50},
    )
    hit, miss, local = k["introspection, Redis hit"], k["introspection, no Redis"], k["introspection cached"]
    per_request = [r["as_calls_per_request"].get("introspection", 0) for r in (hit, miss)]
    add(
        "opaque token first seen on node B after node A introspected it (Redis hit) vs an authorization-server call",
        "Redis hit p50 < no-Redis p50, no introspection per request",
        f"Redis hit {hit['plugin']['median_us']} us, no Redis {miss['plugin']['median_us']} us, local hit "
        f"{local['plugin']['median_us']} us; introspections per request: Redis hit "
        f"{per_request[0]}, no Redis {per_request[1]}",
        hit["plugin"]["median_us"] < miss["plugin"]["median_us"] and "introspection" not in hit["as_calls_per_request"],
        "the mock authorization server is on loopback: a real one is further away",
    )
    fl = res["kid_flood"]
    add(
        "flood of unknown kids",
        "<= 1 JWKS fetch per 10 s",
        f"{fl['jwks_fetches']} fetches in {fl['seconds']} s ({fl['requests']} requests)",
        fl["jwks_fetches"] <= fl["allowed"],
    )
    sa = res["slow_as"]
    add(
        "cached-token p99 while 20 requests wait 2 s on introspection (default mode)",
        "<= 2 x idle p99",
        f"{sa['while_waiting']['p99_us']} us vs idle {sa['idle']['p99_us']} us = {sa['p99_ratio']} x",
        sa["p99_ratio"] <= 2,
    )
    mem = res["memory"]
    sock = mem["through_socket"]
    half = [s["rss_kib"] for s in sock if s["tokens"] >= 1.2 * MAX_ENTRIES]
    growth = (half[-1] - half[0]) if len(half) >= 2 else None
    inproc = mem["in_process"]
    bounded = all(s["cache_entries"] <= MAX_ENTRIES for s in inproc)
    add(
        "100 000 distinct tokens: plugin server memory bounded by the cache sizes",
        f"cache <= {MAX_ENTRIES} entries, RSS flat once the cache is full",
        f"socket: RSS {sock[0]['rss_kib']} -> {sock[-1]['rss_kib']} KiB over {sock[-1]['tokens']} tokens "
        f"(growth after {int(1.2 * MAX_ENTRIES)} tokens: {growth} KiB); in process: {inproc[-1]['tokens']} tokens, "
        f"cache {inproc[-1]['cache_entries']} entries, RSS {inproc[0]['rss_kib']} -> {inproc[-1]['rss_kib']} KiB",
        bounded and growth is not None and growth < 2048,
        "100 000 driven in process (a real CachingTokenVerifier); through the socket a smaller count, RSS extrapolated "
        "from its plateau",
    )
    refused = mem["refused"]
    rgrowth = refused[-1]["rss_kib"] - refused[1]["rss_kib"]
    add(
        "refused and metadata requests (answered by the plugin itself) leave no memory behind",
        "RSS flat after warm-up (< 2 MiB growth), no handler left",
        f"RSS {refused[1]['rss_kib']} -> {refused[-1]['rss_kib']} KiB over {refused[-1]['requests']} requests "
        f"(growth {rgrowth} KiB), handlers left {refused[-1]['handlers']}",
        rgrowth < 2048 and refused[-1]["handlers"] == 0,
        "kong-pdk's own gevent mode kept about 10 KB per such request, forever",
    )
    md = res["modes"]
    add(
        "default gevent vs thread mode (repeated JWT)",
        "report the faster; does a slow AS block others?",
        f"gevent {md['gevent']['median_us']} us, thread {md['thread']['median_us']} us: {md['faster']} faster; "
        f"thread mode while 20 requests wait {md['thread_slow_as']['slow_seconds']} s: cached p99 "
        f"x{md['thread_slow_as']['p99_ratio']}",
        True,
        "information, not a pass/fail target",
    )
    return out


def table(res: dict[str, Any]) -> str:
    lines = [
        f"{'kind':27} {'status':>6} {'med us':>8} {'p99 us':>8} {'floor med':>9} {'ratio':>6} "
        f"{'rps c1':>7} {'rps c16':>7} {'floor c16':>9} {'PDK RT':>6}  AS calls/request"
    ]
    for name, r in res["kinds"].items():
        p, f = r["plugin"], r["floor"]
        calls = ", ".join(f"{k} {v:g}" for k, v in r["as_calls_per_request"].items()) or "0"
        lines.append(
            f"{name:27} {','.join(map(str, r['status'])):>6} {p['median_us']:>8} {p['p99_us']:>8} "
            f"{f['median_us']:>9} {r['ratio_median']:>6} {p['rps_c1']:>7} {p['c16']['rps']:>7} "
            f"{f['c16']['rps']:>9} {r['pdk_round_trips']:>6}  {calls}"
        )
        if "floor+decode" in r:
            lines.append(
                f"{'  floor + jwt.decode':27} {'':>6} {r['floor+decode']['median_us']:>8} "
                f"{r['floor+decode']['p99_us']:>8}"
            )
    if "cluster" in res:
        lines.append("")
        lines.append(f"authorization-server calls for one new token, {cluster_line(res['cluster'])}")
    if "in_process" in res:
        ip = res["in_process"]
        lines.append("")
        lines.append(
            "in process: "
            + ", ".join(f"{k} median {v['median_us']} us" for k, v in ip.items() if "median_us" in v)
            + f", verify(cached) {ip['verify_cached_us']['median']} us"
        )
    lines.append("")
    for t in res.get("targets", []):
        lines.append(f"[{'met ' if t['met'] else 'MISS'}] {t['target']}: {t['measured']} (goal: {t['goal']})")
    return "\n".join(lines)


def cluster_line(cl: dict[str, Any]) -> str:
    on, off = cl["with_redis"], cl["without_redis"]
    return (
        f"{cl['nodes']} nodes x {cl['requests']} concurrent requests: with Redis {on['introspection_calls']} "
        f"introspection, {on['exchange_calls']} exchange; without {off['introspection_calls']}, {off['exchange_calls']}"
    )


#: The README's rows: the kinds of request in results.json, in this order.
README_ROWS = (
    "metadata",
    "rejected: no token",
    "rejected: bad token",
    "JWT first seen RS256",
    "JWT first seen ES256",
    "JWT repeated",
    "JWT repeated, DPoP",
    "introspection cached",
    "introspection, Redis hit",
    "introspection, no Redis",
    "exchange cached",
    "tool call, trusted headers",
    "tool call, body read",
)
README_START, README_END = "<!-- bench:results -->", "<!-- /bench:results -->"


def readme_table(res: dict[str, Any]) -> str:
    """The README's Performance table from the results: latencies in µs at concurrency 1, the plugin
    against the floor plugin making the same PDK calls, req/s at concurrency 16; then the
    authorization-server calls for one new token on two nodes with and without the cluster cache."""
    m = res["machine"]
    lines = [
        f"One run on {m['nproc']} cores ({m['cpu_model']}, Python {m['python']}, kong-pdk {m['kong_pdk']}, "
        f"PyJWT {m['pyjwt']}), default mode;",
        "latencies in µs at concurrency 1:",
        "",
        "| scenario | p50 | p99 | floor p50 | ratio to floor (p50) | req/s at c=16 | PDK round trips |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in README_ROWS:
        r = res["kinds"][kind]
        p = r["plugin"]
        lines.append(
            f"| {kind} | {p['median_us']:.0f} | {p['p99_us']:.0f} | {r['floor']['median_us']:.0f} "
            f"| {r['ratio_median']:.2f} | {p['c16']['rps']:.0f} | {r['pdk_round_trips']} |"
        )
    cl = res["cluster"]
    lines += [
        "",
        f"Authorization-server calls for one new token, {cl['requests']} concurrent requests on {cl['nodes']} nodes "
        f"({cl['per_node']} each):",
        "",
        "| cluster cache | introspections | exchanges |",
        "|---|---|---|",
    ]
    for label, name in (("Redis", "with_redis"), ("off", "without_redis")):
        lines.append(f"| {label} | {cl[name]['introspection_calls']} | {cl[name]['exchange_calls']} |")
    return "\n".join(lines)


def readme_markers(text: str, path: Path) -> tuple[int, int]:
    """Where the generated block goes in the README: between the markers, each once and in order."""
    start, end = text.find(README_START), text.find(README_END)
    if text.count(README_START) != 1 or text.count(README_END) != 1 or end < start:
        raise SystemExit(
            f"{path} must contain the lines {README_START} and {README_END}, once each and in this order, "
            "around the benchmark's results table (Performance); they are missing or misplaced, so the "
            "README cannot be updated"
        )
    return start + len(README_START), end


def write_readme(res: dict[str, Any], path: Path) -> str:
    """Replace what the README holds between its markers with :func:`readme_table`."""
    text = path.read_text()
    start, end = readme_markers(text, path)
    path.write_text(text[:start] + "\n" + readme_table(res) + "\n" + text[end:])
    return f"wrote the results table into {path}"


def picture(res: dict[str, Any], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no picture (pip install matplotlib)"
    names = list(res["kinds"])
    data, labels, colors = [], [], []
    for name in names:
        for label, color in (("plugin", "tab:blue"), ("floor", "tab:gray"), ("floor+decode", "tab:orange")):
            values = res["kinds"][name]["samples_us"].get(label)
            if values:
                data.append(values)
                labels.append(f"{name} — {label}")
                colors.append(color)
    fig, ax = plt.subplots(figsize=(11, max(7.5, 1.5 + 0.28 * len(labels))))
    try:
        parts = ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=False, patch_artist=True)
    except TypeError:  # matplotlib < 3.10
        parts = ax.boxplot(data, vert=False, whis=(1, 99), showfliers=False, patch_artist=True)
    for patch, color in zip(parts["boxes"], colors, strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.6)
    ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency per request, µs (log; box: quartiles, whiskers: p1–p99), concurrency 1")
    m = res["machine"]
    ax.set_title(
        f"ai-mcp-oauth2 behind the Kong stand-in: plugin vs no-op floor\n"
        f"{m['cpu_model']}, {m['nproc']} CPUs, Python {m['python']}, kong-pdk {m['kong_pdk']}, "
        "default (gevent) mode",
        fontsize=9,
    )
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, results written to --out only if given")
    parser.add_argument("--out", type=Path, default=None, help=f"output directory (default {OUT})")
    parser.add_argument(
        "--only",
        action="append",
        metavar="WORD",
        help="measure only the kinds of request and the sections whose names contain WORD (repeatable; "
        f"sections: {', '.join(name for name, _, _ in SECTIONS)}); no targets, results written to --out only if given",
    )
    args = parser.parse_args(argv)
    partial = args.quick or bool(args.only)
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if partial else OUT)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The README shows the committed results: a full run into docs/bench, never a quick or partial one.
    readme = not partial and out_dir.resolve() == OUT.resolve()
    if readme:
        readme_markers(README.read_text(), README)  # before minutes of measuring, not after
    started = time.monotonic()

    def chosen(name: str) -> bool:
        return not args.only or any(word in name for word in args.only)

    res: dict[str, Any] = {
        "machine": machine(),
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
        "quick": args.quick,
        "method": "stand-in access phase driven in process (tests/harness/stack.py drive): router, "
        "PDK semantics and MsgPack RPC over the real Unix socket to the real plugin "
        "server; no HTTP listener, no upstream. Plugin and floor interleaved in rounds.",
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        b = Bench(args.quick, Path(tmp))
        try:
            res["kinds"] = {}
            for kind in kinds(b):
                if chosen(kind["name"]):
                    step(f"kind: {kind['name']}")
                    res["kinds"][kind["name"]] = measure_kind(b, kind)
            for name, key, section in SECTIONS:
                if chosen(name):
                    step(name)
                    res[key] = section(b)
            pid = C.server_pid(b.plugin)
            res["plugin_server_threads_at_end"] = C.threads(pid)
            res["mock_as_errors"] = b.authz.errors
        finally:
            b.close()
    if not args.only:
        res["targets"] = targets(res)
    res["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    res["seconds"] = round(time.monotonic() - started, 1)
    text = table(res)
    print()
    print(text)
    (out_dir / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"\nwrote {out_dir / 'results.json'}")
    if readme:
        print(write_readme(res, README))
    else:
        why = "--quick" if args.quick else "--only" if args.only else f"results in {out_dir}, not {OUT}"
        print(f"README not updated ({why})")
    print(picture(res, out_dir / "latency.png"))
    print(f"machine: {res['machine']}; {res['seconds']} s")
    return 0


#: The measurements after the kinds of request, in order: name (for --only), results.json key, function.
SECTIONS: list[tuple[str, str, Callable[[Bench], Any]]] = [
    ("in process", "in_process", in_process),
    ("single flight", "single_flight", single_flight),
    ("cluster", "cluster", cluster),
    ("unknown-kid flood", "kid_flood", kid_flood),
    ("slow authorization server", "slow_as", lambda b: slow_as(b, b.plugin, waiting=20, slow_s=2.0, label="gevent")),
    ("memory", "memory", memory),
    ("gevent vs thread mode", "modes", modes),
]


def step(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
