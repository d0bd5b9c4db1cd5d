"""kong.request.get_raw_body through the stand-in and a real kong-pdk plugin server, as Kong 3.9 answers it.

kong/pdk/request.lua get_raw_body: ngx.req.read_body(), then the body nginx holds in memory ("" when
there is none); a body nginx buffered to a file (past client_body_buffer_size) only with
max_allowed_file_size, else nil + an error, which mp_rpc.lua's fix_raw turns into a Lua error (500).
"""

import json

import pytest
import requests

from tests.harness.kong_standin import ConfigError, KongStandIn
from tests.harness.kong_standin.pdk import Raised
from tests.harness.kong_standin.rpc import pack
from tests.harness.kong_standin.settings import BODY_BUFFER_ENV, parse_nginx_size, read_settings
from tests.harness_selftest.conftest import plugin_env, script

SVC = "http://mcp.internal:9000"
DEFAULT_BUFFER = 8 * 1024
NOT_BUFFERED = "request body did not fit into client body buffer"


def route(name, *calls, echo=True):
    config = {"script": script(*calls), "echo_results": echo}
    return {"name": name, "paths": [f"/{name}"], "plugins": [{"name": "scripted", "config": config}]}


ROUTES = [
    route("raw", ("kong.request.get_raw_body",), ("kong.request.get_method",)),
    route("unlimited", ("kong.request.get_raw_body", 0)),  # 0: read a buffered-to-file body, any size
    route("upto9000", ("kong.request.get_raw_body", 9000)),
    route("badlimit", ("kong.request.get_raw_body", "9000")),
    route("quiet", ("kong.request.get_raw_body",), echo=False),  # for bodies too large to echo in a header
]


def standin(tmp, up, env=None):
    decl = {"_format_version": "3.0", "services": [{"name": "mcp", "url": SVC, "routes": ROUTES}]}
    return KongStandIn(
        {**plugin_env(tmp, "scripted"), **(env or {})}, decl, rpc_timeout=5, host_map={"mcp.internal:9000": up.address}
    )


@pytest.fixture(scope="module")
def kong_up(tmp_path_factory):
    from tests.harness.upstream import EchoUpstream

    with EchoUpstream() as up, standin(tmp_path_factory.mktemp("kong"), up) as kong:
        yield kong, up


def body_steps(record):
    """The Step frames Kong sent answering get_raw_body (the plugin's first PDK call)."""
    return [f for d, f in record.rpc_transcript if d == "out" and f[2] == "plugin.Step"]


def echoed(up):
    return json.loads(up.last["headers"]["x-scripted-results"][0])


def assert_returned(kong, up, body, path="/raw"):
    """Kong stepped the body as msgpack bin, the plugin got exactly those bytes, the request went on."""
    rec = kong.last
    step = body_steps(rec)[0]
    data = step[3][0]["Data"]
    assert type(data) is bytes and data == body
    header = b"\xc4" + bytes([len(body)]) if len(body) < 256 else b"\xc5" + len(body).to_bytes(2, "big")
    assert header + body in pack(step)  # bin8 / bin16, as Kong's fix_raw packs it
    assert rec.proxied and rec.status == 200 and not rec.failures
    assert up.last["body"] == body.decode("utf-8", "replace")  # proxied whole (the echo decodes it)
    if path == "/raw":
        assert echoed(up)[0] == {"bytes": body.hex()} and rec.round_trips == 3  # body, method, set_header


def assert_refused_with_kongs_500(kong, up, response, before, message=NOT_BUFFERED):
    rec = kong.last
    assert response.status_code == 500
    assert response.json() == {"message": "An unexpected error occurred", "request_id": rec.request_id}
    assert isinstance(rec.pdk_calls[0].result, Raised) and message in rec.pdk_calls[0].result.message
    assert body_steps(rec) == [] and len(rec.pdk_calls) == 1  # the event is abandoned: no step, no more calls
    assert not rec.proxied and len(up.requests) == before and rec.round_trips == 0


def post(kong, path, body, **kw):
    return requests.post(kong.proxy_url + path, data=body, timeout=10, **kw)


def test_a_small_body_is_returned_as_bytes(kong_up):
    kong, up = kong_up
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}'
    assert post(kong, "/raw", body).status_code == 200
    assert_returned(kong, up, body)


def test_bytes_that_are_not_utf8_arrive_unchanged(kong_up):
    kong, up = kong_up
    body = bytes(range(256))
    assert post(kong, "/raw", body).status_code == 200
    assert_returned(kong, up, body)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_no_body_is_an_empty_string_not_nil(kong_up, method):
    kong, up = kong_up
    # POST with Content-Length: 0, and a GET without any body
    response = requests.request(method, kong.proxy_url + "/raw", data=b"" if method == "POST" else None, timeout=10)
    assert response.status_code == 200
    step = body_steps(kong.last)[0]
    assert step[3][0]["Data"] == b"" and b"\xc4\x00" in pack(step)  # "Data" present: an empty bin
    assert echoed(up) == [{"bytes": ""}, method]


def test_a_body_of_exactly_the_buffer_size_is_returned(kong_up):
    kong, up = kong_up
    body = b"x" * DEFAULT_BUFFER
    assert post(kong, "/raw", body).status_code == 200
    assert_returned(kong, up, body)


def test_one_byte_past_the_buffer_kong_cannot_return_the_body_and_answers_500(kong_up):
    kong, up = kong_up
    before = len(up.requests)
    response = post(kong, "/raw", b"x" * (DEFAULT_BUFFER + 1))
    assert_refused_with_kongs_500(kong, up, response, before)
    assert any(NOT_BUFFERED in m for lvl, m in kong.error_log if lvl == "err")


def test_a_chunked_body_is_held_to_the_same_buffer(kong_up):
    kong, up = kong_up
    body = b"y" * DEFAULT_BUFFER
    response = post(kong, "/raw", iter([body[:100], body[100:]]))  # Transfer-Encoding: chunked
    assert response.status_code == 200
    assert_returned(kong, up, body)
    before = len(up.requests)
    response = post(kong, "/raw", iter([body, b"y"]))
    assert_refused_with_kongs_500(kong, up, response, before)


def test_max_allowed_file_size_reads_a_body_buffered_to_a_file(kong_up):
    kong, up = kong_up
    body = b"z" * 9000
    assert post(kong, "/unlimited", body).status_code == 200  # 0: unlimited
    assert_returned(kong, up, body, "/unlimited")
    assert post(kong, "/upto9000", body).status_code == 200
    assert_returned(kong, up, body, "/upto9000")
    before = len(up.requests)
    response = post(kong, "/upto9000", body + b"z")
    assert_refused_with_kongs_500(kong, up, response, before, "request body file too big: 9001 > 9000")
    # in memory, the limit plays no part
    assert post(kong, "/upto9000", b"small").status_code == 200
    assert_returned(kong, up, b"small", "/upto9000")


def test_a_max_allowed_file_size_that_is_not_a_number_is_a_lua_error_only_for_a_buffered_body(kong_up):
    kong, up = kong_up
    assert post(kong, "/badlimit", b"small").status_code == 200
    before = len(up.requests)
    response = post(kong, "/badlimit", b"z" * (DEFAULT_BUFFER + 1))
    assert_refused_with_kongs_500(kong, up, response, before, "attempt to compare string with number")


def test_the_buffer_size_is_kongs_nginx_http_client_body_buffer_size(tmp_path):
    from tests.harness.upstream import EchoUpstream

    with EchoUpstream() as up, standin(tmp_path, up, {BODY_BUFFER_ENV: "1m"}) as kong:
        assert kong.client_body_buffer_size == 1024 * 1024
        body = b"a" * (1024 * 1024)
        assert post(kong, "/quiet", body).status_code == 200
        assert body_steps(kong.last)[0][3][0]["Data"] == body and len(up.last["body"]) == len(body)
        before = len(up.requests)
        response = post(kong, "/quiet", body + b"a")
        assert_refused_with_kongs_500(kong, up, response, before)


@pytest.mark.parametrize(
    ("value", "size"),
    [("8k", 8192), ("8K", 8192), ("1m", 1048576), ("2M", 2097152), ("10240", 10240), ("0", 0), (" 16k ", 16384)],
)
def test_buffer_sizes_parse_as_nginx_sizes(value, size):
    assert read_settings({BODY_BUFFER_ENV: value}).client_body_buffer_size == size


def test_the_default_buffer_is_8k():
    assert read_settings({}).client_body_buffer_size == DEFAULT_BUFFER


@pytest.mark.parametrize("value", ["", "1g", "1.5k", "-1", "+8k", "8 k", "k", "8kb", "0x10", "NONE"])
def test_a_size_nginx_rejects_stops_kong_from_starting(value):
    with pytest.raises(ValueError):
        parse_nginx_size(value.strip())
    with pytest.raises(ConfigError, match="client_body_buffer_size"):
        read_settings({BODY_BUFFER_ENV: value})
