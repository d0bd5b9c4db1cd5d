"""The time budget of one request's outbound work (behaviour §7.5).

Kong waits for the plugin server at most ``lua_socket_read_timeout`` (60 s by default) and then
*proxies the request unauthenticated*. Discovery retries, key fetches, introspection and exchange
can each take ``timeout``, and a server can drip its answer, so one request's outbound work could
exceed that. :func:`request_budget` gives each request a deadline (:data:`REQUEST_BUDGET`, 45 s,
settable with ``--request-budget``), and everything that waits on the network ends by it: every
outbound call (``http.py``), and waiting on a shared fetch (``cache.SingleFlight``, a 503).

The deadline belongs to the thread handling the request (its greenlet in gevent mode, where
``threading.local`` is patched to be greenlet-local).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

REQUEST_BUDGET = 45.0  # seconds; below Kong's default 60 s plugin-server read timeout
_budget = threading.local()


def set_request_budget(seconds: float) -> None:
    """The budget of every request from now on (the ``--request-budget`` flag)."""
    global REQUEST_BUDGET
    REQUEST_BUDGET = seconds


@contextmanager
def request_budget(seconds: float | None = None) -> Iterator[None]:
    """A deadline for the outbound work done while handling one request (in this thread)."""
    previous = getattr(_budget, "deadline", None)
    _budget.deadline = time.monotonic() + (REQUEST_BUDGET if seconds is None else seconds)
    try:
        yield
    finally:
        _budget.deadline = previous


def remaining() -> float | None:
    """Seconds left of the current request's budget, or None outside of a request."""
    deadline = getattr(_budget, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()
