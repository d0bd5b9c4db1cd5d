import json
import os
import sys

import pytest

from tests.harness.upstream import EchoUpstream

PLUGINS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "harness", "plugins")


def plugin_env(tmp_path, *names, extra_plugins=()):
    """KONG_* env for dedicated self-test plugin servers (tests/harness/plugins/<name>.py)."""
    env = {
        "KONG_PREFIX": str(tmp_path),
        "KONG_PLUGINS": ",".join(("bundled",) + names + tuple(extra_plugins)),
        "KONG_PLUGINSERVER_NAMES": ",".join(names),
    }
    for n in names:
        key = "KONG_PLUGINSERVER_" + n.upper().replace("-", "_")
        script = os.path.join(PLUGINS_DIR, n.replace("-", "_") + ".py")
        env[key + "_QUERY_CMD"] = f"{sys.executable} {script} --dump"
        env[key + "_START_CMD"] = f"{sys.executable} {script} --kong-prefix {tmp_path} --socket-name {n}.socket"
    return env


def script(*calls):
    return json.dumps([[m, list(a)] for m, *a in calls])


def decl(upstream_addr, plugins=(), routes=None, service_path=None, **extra):
    svc = {
        "name": "mcp",
        "url": f"http://mcp.internal:9000{service_path or ''}",
        "routes": routes if routes is not None else [{"name": "r", "paths": ["/mcp"]}],
    }
    d = {"_format_version": "3.0", "services": [svc], "plugins": list(plugins)}
    d.update(extra)
    return d


@pytest.fixture
def upstream():
    with EchoUpstream() as up:
        yield up


@pytest.fixture
def host_map(upstream):
    return {"mcp.internal:9000": upstream.address}
