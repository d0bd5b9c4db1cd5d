"""Black-box tests: the real ai-mcp-oauth2 plugin server behind the Kong stand-in, real HTTP.

The plugin server is started the way Kong starts it: from KONG_PLUGINSERVER_* settings that
name the installed console script, with Kong's query command and socket conventions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.devstack import plugin_server_env
from tests.harness.kong_standin import KongStandIn, load_declarative
from tests.harness.upstream import EchoUpstream

ROOT = Path(__file__).resolve().parent.parent.parent
KONG_YAML = ROOT / "kong" / "kong.yaml"


def kong_env(prefix: Path) -> dict[str, str]:
    """What a user sets for Kong (README, "Install into Kong"), pointed at a temporary prefix."""
    return plugin_server_env(str(prefix))


def plugin_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "resource": "http://localhost:8000/mcp",
        "authorization_servers": ["http://localhost:9090"],
    }
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


def declarative(
    config: dict[str, Any] | None = None, paths: list[str] | None = None, consumers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A one-route kong.yaml with the plugin on the route, like kong/kong.yaml."""
    document: dict[str, Any] = {"consumers": consumers} if consumers else {}
    return document | {
        "_format_version": "3.0",
        "services": [{
            "name": "mcp-server",
            "url": "http://mcp-server:9000",
            "routes": [{
                "name": "mcp",
                "paths": paths or ["/mcp", "/.well-known/oauth-protected-resource/mcp"],
                "strip_path": False,
                "plugins": [{"name": "ai-mcp-oauth2", "config": config or plugin_config()}],
            }],
        }],
    }  # fmt: skip


StartKong = Callable[..., KongStandIn]


@pytest.fixture
def start_kong(tmp_path: Path, upstream: EchoUpstream) -> Iterator[StartKong]:
    started: list[KongStandIn] = []

    def start(config: dict[str, Any] | None = None, **kwargs: Any) -> KongStandIn:
        prefix = tmp_path / f"kong{len(started)}"
        prefix.mkdir()
        kwargs.setdefault("host_map", {"mcp-server:9000": f"127.0.0.1:{upstream.port}"})
        kong = KongStandIn(env=kong_env(prefix), declarative=copy.deepcopy(config or declarative()), **kwargs)
        started.append(kong)
        kong.start()
        return kong

    yield start
    for kong in started:
        kong.stop()


@pytest.fixture
def kong(start_kong: StartKong) -> KongStandIn:
    """The stand-in loaded with the repository's own kong/kong.yaml."""
    return start_kong(load_declarative(str(KONG_YAML)))
