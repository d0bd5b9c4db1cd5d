"""Process-level self-tests: real kong-pdk plugin servers driven through the Kong stand-in."""

import http.client
import json
import time
from typing import Any

import pytest
import requests

from tests.harness.kong_standin import ConfigError, KongStandIn
from tests.harness.kong_standin.pdk import Raised
from tests.harness_selftest.conftest import plugin_env, script

SVC = "http://mcp.internal:9000"


def route(name, paths, calls=None, echo=False, **kw):
    r = {"name": name, "paths": paths, **kw}
    if calls is not None:
        r["plugins"] = [{"name": "scripted", "config": {"script": script(*calls), "echo_results": echo}}]
    return r


ROUTES = [
    route(
        "wire",
        ["/wire"],
        [
            ("kong.request.get_header", "x-token"),
            ("kong.request.get_headers",),
            ("kong.request.get_path",),
            ("kong.service.request.set_header", "x-added", "yes"),
            ("kong.request.get_header", "x_added"),
        ],
        echo=True,
    ),
    route(
        "luaerr",
        ["/luaerr"],
        [("kong.request.get_method",), ("kong.response.set_header", "x-bad", None), ("kong.request.get_path",)],
    ),
    route("badexit", ["/badexit"], [("kong.response.exit", 99, "no")]),
    route("unknown", ["/unknown"], [("kong.request.no_such_method", 1), ("kong.request.get_method",)], echo=True),
    route(
        "exit",
        ["/exit"],
        [
            ("kong.response.set_header", "x-pending", "1"),
            ("kong.response.exit", 401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer realm="mcp"'}),
        ],
    ),
    route("error", ["/error"], [("kong.response.error", 403)]),
    route(
        "clear",
        ["/clear"],
        [("kong.service.request.clear_header", "X-Email"), ("kong.service.request.set_header", "X-User", "set")],
    ),
    route("plain", ["/plain"]),
    route("nostrip", ["/nostrip"], strip_path=False),
    route("preserve", ["/preserve"], preserve_host=True),
    route("longer", ["/plain/deeper"], strip_path=True),
    route("regex", ["~/items/(?P<id>\\d+)$"], [("kong.request.get_uri_captures",)], echo=True),
    route("byhost", ["/plain"], hosts=["api.example.com"]),
    route(
        "fwd",
        ["/fwd"],
        [
            ("kong.request.get_forwarded_scheme",),
            ("kong.request.get_forwarded_host",),
            ("kong.request.get_forwarded_port",),
            ("kong.request.get_forwarded_prefix",),
            ("kong.client.get_forwarded_ip",),
        ],
        echo=True,
    ),
]


@pytest.fixture(scope="module")
def env_kong(tmp_path_factory):
    from tests.harness.upstream import EchoUpstream

    tmp = tmp_path_factory.mktemp("kong")
    with EchoUpstream() as up:
        decl = {"_format_version": "3.0", "services": [{"name": "mcp", "url": SVC + "/base", "routes": ROUTES}]}
        with KongStandIn(
            plugin_env(tmp, "scripted"),
            decl,
            trusted_ips=["10.0.0.0/8"],
            rpc_timeout=5,
            host_map={"mcp.internal:9000": up.address},
        ) as kong:
            yield kong, up


def get(kong, path, **kw):
    return requests.get(kong.proxy_url + path, timeout=10, **kw)


def frames(record, direction="out"):
    return [f for d, f in record.rpc_transcript if d == direction]


def test_pdk_round_trips_match_kongs_wire_format(env_kong):
    kong, up = env_kong
    r = get(kong, "/wire/x", headers={"X-Token": "abc"})
    assert r.status_code == 200
    rec = kong.last
    out = frames(rec)
    methods = [f[2] for f in out]
    assert methods[:2] == ["plugin.StartInstance", "plugin.HandleEvent"]
    assert methods[2:] == [
        "plugin.Step",
        "plugin.StepMultiMap",
        "plugin.Step",
        "plugin.Step",
        "plugin.Step",
        "plugin.Step",
    ]
    # msg ids are a per-plugin-server counter
    ids = [f[1] for f in out]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert out[2][3] == [{"EventId": out[2][3][0]["EventId"], "Data": b"abc"}]
    # header bytes travel as msgpack str (fixstr 0xa3), as Kong packs Lua strings, never as bin (0xc4)
    from tests.harness.kong_standin.rpc import pack

    assert b"\xa3abc" in pack(out[2]) and b"\xc4" not in pack(out[2])
    mm = out[3][3][0]["Data"]
    assert mm["x-token"] == [b"abc"] and all(isinstance(v, list) for v in mm.values())
    # set_header returns nil -> the "Data" key is omitted
    assert out[5][3][0] == {"EventId": out[5][3][0]["EventId"]}
    # later get_header sees the service-request mutation; `_` matches `-`
    assert out[6][3][0]["Data"] == b"yes"
    assert rec.round_trips == 6 and rec.proxied
    assert up.last["headers"]["x-added"] == ["yes"]
    results = json.loads(up.last["headers"]["x-scripted-results"][0])
    assert results[0] == "abc" and results[2] == "/wire/x" and results[3] is None
    # second request on the same worker reuses the instance (no StartInstance)
    get(kong, "/wire/x")
    assert frames(kong.last)[0][2] == "plugin.HandleEvent"


def test_lua_error_in_pdk_call_abandons_event_and_returns_kongs_500_template(env_kong):
    kong, _ = env_kong
    r = get(kong, "/luaerr")
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.json() == {"message": "An unexpected error occurred", "request_id": kong.last.request_id}
    rec = kong.last
    assert not rec.proxied and rec.failures
    assert isinstance(rec.pdk_calls[-1].result, Raised)
    # no RPC after the failing call: last frame sent is the Step answering get_method
    assert (
        frames(rec)[-1][2] == "plugin.Step" and frames(rec, "in")[-1][3]["Data"]["Method"] == "kong.response.set_header"
    )
    assert rec.round_trips == 1


def test_exit_status_outside_100_599_is_a_lua_error(env_kong):
    kong, _ = env_kong
    assert get(kong, "/badexit").status_code == 500
    assert "code must be a number between 100 and 599" in kong.last.failures[0]


def test_unknown_pdk_method_is_logged_and_answered_with_nil(env_kong):
    kong, up = env_kong
    r = get(kong, "/unknown")
    assert r.status_code == 200
    assert ("err", "could not find pdk method: kong.request.no_such_method") in kong.error_log
    step = frames(kong.last)[-3]
    assert step[2] == "plugin.Step" and "Data" not in step[3][0]
    assert json.loads(up.last["headers"]["x-scripted-results"][0]) == [None, "GET"]


def test_response_exit_sends_json_body_with_pending_headers_and_no_further_rpc(env_kong):
    kong, _ = env_kong
    r = get(kong, "/exit")
    assert r.status_code == 401
    assert r.json() == {"error": "invalid_token"}
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="mcp"'
    assert r.headers["x-pending"] == "1"
    assert r.headers["Server"].startswith("kong/") and r.headers["X-Kong-Request-Id"] == kong.last.request_id
    assert int(r.headers["Content-Length"]) == len(r.content)
    rec = kong.last
    assert rec.exit["status"] == 401 and not rec.proxied and rec.round_trips == 1
    assert frames(rec, "in")[-1][3]["Data"]["Method"] == "kong.response.exit"
    # HEAD: headers (incl. Content-Length of the body) but no body
    h = requests.head(kong.proxy_url + "/exit", timeout=10)
    assert h.status_code == 401 and h.content == b"" and int(h.headers["Content-Length"]) > 0


def test_response_error_renders_kongs_error_template(env_kong):
    kong, _ = env_kong
    r = get(kong, "/error")
    assert r.status_code == 403 and r.json() == {"message": "Forbidden", "request_id": kong.last.request_id}


def test_no_matching_route_gives_kongs_404(env_kong):
    kong, _ = env_kong
    r = get(kong, "/nothing-here")
    assert r.status_code == 404
    assert r.json() == {"message": "no Route matched with those values", "request_id": kong.last.request_id}


def test_strip_path_joins_service_path_and_sets_forwarded_prefix(env_kong):
    kong, up = env_kong
    get(kong, "/plain/a?q=1")
    assert up.last["path"] == "/base/a" and up.last["query"] == "q=1"
    assert up.last["headers"]["x-forwarded-prefix"] == ["/plain"]
    assert up.last["headers"]["host"] == ["mcp.internal:9000"]
    assert up.last["headers"]["via"] == ["1.1 kong/3.9.1"]
    get(kong, "/nostrip/a")
    assert up.last["path"] == "/base/nostrip/a" and "x-forwarded-prefix" not in up.last["headers"]


def test_preserve_host_forwards_the_client_host_header(env_kong):
    kong, up = env_kong
    get(kong, "/preserve/x", headers={"Host": "client.example:8443"})
    assert up.last["headers"]["host"] == ["client.example:8443"]


def test_route_precedence_longest_prefix_then_hosts_then_regex(env_kong):
    kong, up = env_kong
    get(kong, "/plain/deeper/z")
    assert up.last["path"] == "/base/z"  # route "longer" beat "plain"
    get(kong, "/plain/q", headers={"Host": "api.example.com"})
    assert kong.last.upstream_request is not None
    assert up.last["path"] == "/base/q"
    get(kong, "/items/42")
    caps = json.loads(up.last["headers"]["x-scripted-results"][0])[0]
    assert caps["named"] == {"id": "42"}


def test_x_forwarded_headers_are_honoured_only_from_trusted_ips(env_kong):
    kong, up = env_kong
    hdrs = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "public.example:8443",
        "X-Forwarded-Prefix": "/gw",
        "X-Real-IP": "10.1.2.3",
        "X-Forwarded-For": "1.2.3.4",
    }
    get(kong, "/fwd", headers=hdrs)  # client 127.0.0.1 is NOT in trusted_ips
    res = json.loads(up.last["headers"]["x-scripted-results"][0])
    assert res == ["http", "127.0.0.1", kong.port, "/fwd", "127.0.0.1"]
    assert up.last["headers"]["x-forwarded-proto"] == ["http"]
    assert up.last["headers"]["x-forwarded-for"] == ["127.0.0.1"]
    kong.trusted_ips.append("127.0.0.1/32")
    try:
        get(kong, "/fwd", headers=hdrs)
    finally:
        kong.trusted_ips.remove("127.0.0.1/32")
    res = json.loads(up.last["headers"]["x-scripted-results"][0])
    # X-Forwarded-Host's port feeds get_forwarded_port when X-Forwarded-Port is absent
    assert res == ["https", "public.example", 8443, "/gw", "10.1.2.3"]
    assert up.last["headers"]["x-forwarded-for"] == ["1.2.3.4, 127.0.0.1"]
    assert up.last["headers"]["x-forwarded-proto"] == ["https"]


def test_keep_alive_serves_two_requests_over_one_connection(env_kong):
    kong, _ = env_kong
    conn = http.client.HTTPConnection("127.0.0.1", kong.port, timeout=10)
    try:
        conn.request("GET", "/plain/1")
        r1 = conn.getresponse()
        r1.read()
        sock = conn.sock
        conn.request("GET", "/exit")
        r2 = conn.getresponse()
        r2.read()
        assert (r1.status, r2.status) == (200, 401) and conn.sock is sock
    finally:
        conn.close()


def test_sse_is_streamed_incrementally(env_kong):
    kong, _ = env_kong
    conn = http.client.HTTPConnection("127.0.0.1", kong.port, timeout=10)
    try:
        t0 = time.monotonic()
        conn.request("GET", "/plain/sse")
        r = conn.getresponse()
        assert r.getheader("Content-Type") == "text/event-stream"
        assert r.getheader("Transfer-Encoding") == "chunked"
        first = r.read1(65536)
        t_first = time.monotonic() - t0
        rest = r.read()
        t_all = time.monotonic() - t0
    finally:
        conn.close()
    assert b"id: 0" in first and b"id: 2" not in first
    assert b"id: 2" in rest
    assert t_first < 0.2 and t_all >= 0.35


def test_upstream_connect_failure_gives_kongs_502(tmp_path):
    decl = {
        "_format_version": "3.0",
        "services": [{"name": "s", "url": "http://127.0.0.1:9", "routes": [{"paths": ["/"]}]}],
    }
    with KongStandIn({"KONG_PREFIX": str(tmp_path)}, decl) as kong:
        r = get(kong, "/x")
    assert r.status_code == 502
    assert r.json()["message"] == "An invalid response was received from the upstream server"


# ---------------------------------------------------------------- start-up checks
def _dump_env(tmp_path, info):
    path = tmp_path / "dump.json"
    path.write_text(json.dumps([info]))
    return {
        "KONG_PREFIX": str(tmp_path),
        "KONG_PLUGINS": "bundled,x",
        "KONG_PLUGINSERVER_NAMES": "x",
        "KONG_PLUGINSERVER_X_QUERY_CMD": f"cat {path}",
        "KONG_PLUGINSERVER_X_START_CMD": "sleep 30",
    }


GOOD: dict[str, Any] = {
    "Name": "x",
    "Phases": ["access"],
    "Priority": 10,
    "Version": "1.0.0",
    "Schema": {"name": "x", "fields": [{"config": {"type": "record", "fields": []}}]},
}


@pytest.mark.parametrize(
    "patch,msg",
    [
        ({"Version": None}, 'does not follow the "x.y.z" format'),
        ({"Version": "1.0"}, 'does not follow the "x.y.z" format'),
        ({"Priority": 1.5}, "PRIORITY field is not a valid integer"),
        ({"Protocol": "ProtoBuf:1"}, "unsupported protocol"),
        ({"Name": "y"}, "not enabled"),
    ],
)
def test_plugin_info_is_checked_like_kong_plugin_loader(tmp_path, patch, msg):
    env = _dump_env(tmp_path, {**GOOD, **patch})
    with pytest.raises(ConfigError, match=msg):
        KongStandIn(env, {"_format_version": "3.0"}).start()


def test_undecodable_dump_is_failed_decoding_plugin_info(tmp_path):
    env = {
        "KONG_PREFIX": str(tmp_path),
        "KONG_PLUGINS": "bundled,x",
        "KONG_PLUGINSERVER_NAMES": "x",
        "KONG_PLUGINSERVER_X_QUERY_CMD": "echo 'hello'; echo '[]'",
    }
    with pytest.raises(ConfigError, match="failed decoding plugin info"):
        KongStandIn(env, {"_format_version": "3.0"}).start()


def test_only_the_first_dumped_plugin_is_registered_on_kong_39(tmp_path):
    path = tmp_path / "dump.json"
    second = {**GOOD, "Name": "z", "Schema": {**GOOD["Schema"], "name": "z"}}
    path.write_text(json.dumps([GOOD, second]))
    env = {
        "KONG_PREFIX": str(tmp_path),
        "KONG_PLUGINS": "bundled,x,z",
        "KONG_PLUGINSERVER_NAMES": "x",
        "KONG_PLUGINSERVER_X_QUERY_CMD": f"cat {path}",
    }
    with pytest.raises(ConfigError, match="z plugin is enabled but not installed"):
        KongStandIn(env, {"_format_version": "3.0"}).start()


# ---------------------------------------------------------------- silent plugin / reload
def test_silent_plugin_times_out_with_no_data_and_kong_fails_open(tmp_path, upstream, host_map):
    decl = {
        "_format_version": "3.0",
        "plugins": [{"name": "silent"}],
        "services": [{"name": "mcp", "url": SVC, "routes": [{"paths": ["/mcp"]}]}],
    }
    with KongStandIn(plugin_env(tmp_path, "silent"), decl, rpc_timeout=1, host_map=host_map) as kong:
        t0 = time.monotonic()
        r = get(kong, "/mcp")
        elapsed = time.monotonic() - t0
        rec = kong.last
    assert r.status_code == 200 and rec.proxied and len(upstream.requests) == 1
    assert elapsed >= 0.9
    assert any("no data" in f for f in rec.failures)
    assert any(lvl == "err" and "no data" in m for lvl, m in kong.error_log)


def test_reload_starts_a_new_instance_then_closes_the_old_one(tmp_path, upstream, host_map):
    def decl(label):
        return {
            "_format_version": "3.0",
            "plugins": [{"name": "scripted", "config": {"script": "[]", "label": label}}],
            "services": [{"name": "mcp", "url": SVC, "routes": [{"paths": ["/mcp"]}]}],
        }

    with KongStandIn(plugin_env(tmp_path, "scripted"), decl("one"), host_map=host_map, workers=2) as kong:
        get(kong, "/mcp")
        get(kong, "/mcp")  # round robin: each worker starts its own instance
        st = kong.plugin_status("scripted")["Plugins"]["scripted"]["Instances"]
        assert len(st) == 2 and {i["Config"]["label"] for i in st} == {"one"}
        with pytest.raises(ConfigError):
            kong.reload({"_format_version": "3.0", "plugins": [{"name": "scripted", "config": {}}]})
        kong.reload(decl("two"))
        get(kong, "/mcp")
        rec = kong.last
        assert [f[2] for f in frames(rec)][:2] == ["plugin.StartInstance", "plugin.CloseInstance"]
        assert json.loads(frames(rec)[0][3][0]["Config"])["__seq__"] > 1
        get(kong, "/mcp")
        st = kong.plugin_status("scripted")["Plugins"]["scripted"]["Instances"]
        assert len(st) == 2 and {i["Config"]["label"] for i in st} == {"two"}
        assert kong.server_output and kong.server_output[0].startswith("[scripted:")


def test_header_bytes_that_are_not_utf8_kill_a_stock_kong_pdk_connection_and_kong_fails_open(env_kong):
    """Kong packs header bytes as msgpack str; kong-pdk's stock loop decodes strictly and dies, Kong
    reads "no data" and proxies. The stand-in must reproduce this, or it would hide the hazard."""
    kong, up = env_kong
    before = len(up.requests)
    r = get(kong, "/wire/x", headers={"X-Token": "\xff\xfe"})  # raw bytes 0xFF 0xFE on the wire
    assert r.status_code == 200 and kong.last.proxied and len(up.requests) == before + 1
    assert any("no data" in failure for failure in kong.last.failures)


def test_service_request_headers_are_cleared_and_set_by_name_case_insensitively_with_underscores_distinct(env_kong):
    """As lua-nginx-module does (nginx with underscores_in_headers on, so X_Email reaches the upstream)."""
    kong, up = env_kong
    r = get(kong, "/clear", headers={"X_Email": "a", "x-EMAIL": "b", "X_User": "c", "X-User": "d"})
    assert r.status_code == 200
    received = up.last["headers"]
    assert received["x_email"] == ["a"] and "x-email" not in received
    assert received["x_user"] == ["c"] and received["x-user"] == ["set"]
