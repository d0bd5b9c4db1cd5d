"""Thread-safe fault table and request records."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

ENDPOINTS = ("metadata", "jwks", "introspection", "token")
FAULT_MODES = ("500", "503", "404", "hang", "drop", "garbage", "wrong_json", "slow", "401")
HANG_MAX_SECONDS = 30.0


@dataclass
class Recorded:
    endpoint: str  # metadata | jwks | introspection | token | authorize | dev | other
    method: str
    path: str
    headers: dict[str, str]  # lowercase names
    form: dict[str, list[str]]
    client_id_authenticated: str | None = None
    auth_method_used: str | None = None
    peer_cert_der: bytes | None = None
    query: str = ""
    body: bytes = b""
    listener: str = "main"  # "main" or "mtls"
    fault: str | None = None  # fault mode applied to this request, if any
    status: int | None = None  # status answered (None: dropped / hung)
    error: str | None = None  # OAuth error code answered, if any
    auth_error: str | None = None  # why client authentication failed, if it did


class RecordLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Recorded] = []

    def add(self, r: Recorded) -> Recorded:
        with self._lock:
            self._items.append(r)
        return r

    def list(self) -> list[Recorded]:
        with self._lock:
            return list(self._items)

    def count(self, endpoint: str) -> int:
        with self._lock:
            return sum(1 for r in self._items if r.endpoint == endpoint)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class FaultTable:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, list[Any]] = {}  # endpoint -> [mode, remaining or None]
        self._release = threading.Event()
        self._stopping = False

    def set(self, endpoint: str, mode: str | None, count: int | None = None) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {ENDPOINTS}")
        if mode is not None and mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {FAULT_MODES}")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or None")
        with self._lock:
            if mode is None:
                self._faults.pop(endpoint, None)
            else:
                self._faults[endpoint] = [mode, count]

    def take(self, endpoint: str) -> str | None:
        """The fault mode to apply to this request (consuming one of its count), or None."""
        with self._lock:
            f = self._faults.get(endpoint)
            if f is None:
                return None
            mode, remaining = f
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    del self._faults[endpoint]
                else:
                    f[1] = remaining
            return str(mode)

    def hang(self) -> None:
        with self._lock:
            ev = self._release
            if self._stopping:
                return
        ev.wait(HANG_MAX_SECONDS)

    def release(self) -> None:
        with self._lock:
            ev, self._release = self._release, threading.Event()
        ev.set()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            ev = self._release
        ev.set()

    def restart(self) -> None:
        with self._lock:
            self._stopping = False
            self._release = threading.Event()
