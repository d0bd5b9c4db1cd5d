"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.stack import RESOURCE

CLIENT_SECRET = "kong-secret"  # the gateway's client "kong" at the mock authorization server


@pytest.fixture
def authz() -> Iterator[MockAuthorizationServer]:
    """A mock authorization server issuing tokens for the stand-in's resource, with the gateway's client."""
    with MockAuthorizationServer(resource=RESOURCE) as server:
        server.add_client("kong", "client_secret_basic", secret=CLIENT_SECRET)
        yield server
