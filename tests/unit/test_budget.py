"""Behaviour §7: each request's outbound work has a deadline, kept per thread."""

from __future__ import annotations

import threading

import pytest

from kong_plugins.ai_mcp_oauth2 import budget
from kong_plugins.ai_mcp_oauth2.budget import remaining, request_budget, set_request_budget


def test_outside_of_a_request_there_is_no_deadline() -> None:
    assert remaining() is None


def test_a_request_has_its_budget_and_the_previous_deadline_comes_back_after_it() -> None:
    with request_budget(30):
        left = remaining()
        assert left is not None and 29 < left <= 30
        with request_budget(1):
            inner = remaining()
            assert inner is not None and inner <= 1
        outer = remaining()
        assert outer is not None and outer > 1
    assert remaining() is None


def test_the_deadline_belongs_to_the_thread_that_set_it() -> None:
    seen: list[float | None] = []
    with request_budget(30):
        thread = threading.Thread(target=lambda: seen.append(remaining()))
        thread.start()
        thread.join(5)
    assert seen == [None]


def test_set_request_budget_is_the_default_of_every_request_from_then_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "REQUEST_BUDGET", budget.REQUEST_BUDGET)  # restored after the test
    set_request_budget(2.0)
    assert budget.REQUEST_BUDGET == 2.0
    with request_budget():
        left = remaining()
        assert left is not None and 1 < left <= 2
