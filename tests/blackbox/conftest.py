"""Black-box tests of the demo stack over HTTP only: they run unchanged against real Kong.

With ``KONG_PROXY_URL`` (and ``MOCK_AS_URL``) set they test that stack, e.g. real Kong from
``docker compose up`` (``scripts/test-kong``). Otherwise they start the Docker-free demo stack
(``tests/harness/devstack.py``: the plugin server behind the Kong stand-in) on its usual ports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Stack:
    proxy_url: str
    as_url: str
    real: bool  # True when pointed at an externally running stack

    @property
    def mcp_url(self) -> str:
        return self.proxy_url + "/mcp"


@pytest.fixture(scope="package")  # the stack holds ports 8000/9090/9000: free them for later packages
def stack() -> Iterator[Stack]:
    proxy = os.environ.get("KONG_PROXY_URL")
    if proxy:
        yield Stack(proxy.rstrip("/"), os.environ.get("MOCK_AS_URL", "http://localhost:9090").rstrip("/"), True)
        return
    from tests.harness.devstack import DevStack

    with DevStack() as dev:
        yield Stack(dev.proxy_url, dev.as_url, False)
