"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.harness.upstream import EchoUpstream


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """An HTTP client that ignores proxy settings of the environment (tests talk to loopback)."""
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture(scope="session")
def upstream() -> Iterator[EchoUpstream]:
    """The echo upstream (an MCP server stand-in) that records every request it receives."""
    server = EchoUpstream()
    server.start()
    yield server
    server.stop()
