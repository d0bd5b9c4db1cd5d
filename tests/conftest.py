"""Fixtures shared by every test directory, built on the helpers of ``tests/harness/stack.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.harness import stack
from tests.harness.kong_standin import KongStandIn, load_declarative
from tests.harness.redis_server import RedisServer
from tests.harness.upstream import EchoUpstream


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """An HTTP client that ignores proxy settings of the environment (tests talk to loopback)."""
    with stack.session() as session:
        yield session


@pytest.fixture(scope="session")
def upstream() -> Iterator[EchoUpstream]:
    """The echo upstream (an MCP server stand-in) that records every request it receives."""
    server = EchoUpstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_kong(tmp_path: Path, upstream: EchoUpstream) -> Iterator[stack.StartKong]:
    """``start_kong(document=None, **kwargs)``: one more stand-in with the real plugin server in
    front of the echo upstream (see :func:`tests.harness.stack.start`); all stopped after the test."""
    with stack.started_kongs(tmp_path, upstream.port) as start:
        yield start


@pytest.fixture
def kong(start_kong: stack.StartKong) -> KongStandIn:
    """The stand-in loaded with the repository's own kong/kong.yaml."""
    return start_kong(load_declarative(str(stack.KONG_YAML)))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on loopback for the whole session (tests/harness/redis_server.py)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_db(redis_server: RedisServer) -> RedisServer:
    """The session's redis-server, running and emptied for this test."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server
