"""What the stand-in records of each request, and the configuration a request runs under."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from .declarative import DeclarativeConfig
from .pdk import TERMINAL_METHODS, ExitResponse, Raised

# what a plugin's phase handler decided: a response (exit/error), "error" (a Lua error: 500) or None (go on)
Outcome: TypeAlias = ExitResponse | Literal["error"] | None


@dataclass
class ConfigState:
    """A loaded declarative configuration and its ``__seq__`` (a new one at every reload)."""

    decl: DeclarativeConfig
    seq: int


@dataclass
class PdkCall:
    plugin: str
    phase: str
    method: str
    args: list[Any]
    result: object = None


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    status: int | None = None
    proxied: bool = False
    upstream_request: dict[str, Any] | None = None
    pdk_calls: list[PdkCall] = field(default_factory=list)
    exit: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    rpc_transcript: list[tuple[str, Any]] = field(default_factory=list)  # (direction, frame) of this request's RPCs

    @property
    def round_trips(self) -> int:
        """PDK calls that needed a reply over the socket: all except kong.response.exit/error
        (and except calls on which Kong raised a Lua error: no reply was sent for those)."""
        return sum(1 for c in self.pdk_calls if c.method not in TERMINAL_METHODS and not isinstance(c.result, Raised))
