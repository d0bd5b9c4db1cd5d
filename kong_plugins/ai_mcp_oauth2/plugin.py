"""The kong-pdk glue: the only module that knows the ``kong`` PDK object.

The plugin server that runs it is :mod:`.pluginserver`.

Behaviour §2: Kong proxies the request when a Python handler raises, so the handler catches
everything and answers 500 itself, and after ``kong.response.exit`` makes no further PDK call.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from kong_pdk.exception import PDKException

from . import PRIORITY, __version__
from .config import warnings
from .errors import InternalError, Response
from .gateway import MAX_HEADERS, Gateway, LetThrough, render
from .schema import SCHEMA

log = logging.getLogger("ai_mcp_oauth2")

version = __version__
priority = PRIORITY
Schema = SCHEMA

_LOG_LEVELS = ("debug", "info", "notice", "warn", "err", "crit", "alert")


class KongRequest:
    """:class:`~.gateway.RequestView` over the PDK: one round trip per question, asked once."""

    __slots__ = ("kong", "origin")

    def __init__(self, kong: Any) -> None:
        self.kong = kong
        self.origin: tuple[object, object, object] | None = None

    def headers(self) -> Mapping[str, Sequence[str]]:
        headers = self.kong.request.get_headers(MAX_HEADERS)
        return headers if isinstance(headers, dict) else {}

    def path(self) -> str:
        path = self.kong.request.get_path()
        return path if isinstance(path, str) else ""

    def method(self) -> str:
        method = self.kong.request.get_method()
        return method if isinstance(method, str) else ""

    def forwarded_origin(self) -> tuple[object, object, object]:
        """Asked once per request: a DPoP request needs it for ``htu`` and again for a challenge."""
        if self.origin is None:
            request = self.kong.request
            self.origin = request.get_forwarded_scheme(), request.get_forwarded_host(), request.get_forwarded_port()
        return self.origin

    def log(self, level: str, message: str) -> None:
        if level in _LOG_LEVELS:
            getattr(self.kong.log, level)(message)

    def load_consumer(self, value: str, by_username: bool) -> Mapping[str, Any] | None:
        consumer = self.kong.client.load_consumer(value, by_username)
        return consumer if isinstance(consumer, dict) else None

    def raw_body(self, file_limit: int | None) -> bytes | None:
        """One ``kong.request.get_raw_body()`` round trip. With ``file_limit``, Kong (3.8+) also reads a
        body nginx buffered to a file (larger than ``nginx_http_client_body_buffer_size``) up to that
        many bytes (its ``max_allowed_file_size``); without, only a body held in memory.

        Kong sends the body as msgpack *bin* (``mp_rpc.lua`` ``fix_raw``), so it arrives as bytes,
        ``b""`` for no body. A *str* (a plugin-protocol peer that sends Lua strings as str) was
        decoded by :func:`.pluginserver.handle_connection` with ``surrogateescape`` and is encoded
        back to the same bytes. A body Kong cannot return (past the buffer without ``file_limit``, or
        a file above it): Kong 3.9 then fails the call with a Lua error (no step, a 500 of its own,
        never a proxied request); an error step (kong-pdk raises ``PDKException``) or a step without
        data is None here, never an empty body.
        """
        try:
            body = (
                self.kong.request.get_raw_body(file_limit)
                if file_limit is not None
                else self.kong.request.get_raw_body()
            )
        except PDKException:
            return None
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode("utf-8", "surrogateescape")
        return None


def exit_args(response: Response) -> list[Any]:
    """The arguments of ``kong.response.exit`` for a response."""
    return [response.status, response.body.decode() if response.body else None, response.headers]


def _exit(kong: Any, response: Response) -> None:
    kong.response.exit(*exit_args(response))


def _let_through(kong: Any, decision: LetThrough) -> None:
    """Make the decision's changes to the upstream request and Kong's identity; Kong then proxies it."""
    if decision.set_headers:
        kong.service.request.set_headers(dict(decision.set_headers))
    for name in decision.clear_headers:
        kong.service.request.clear_header(name)
    if decision.consumer is not None or decision.credential is not None:
        kong.client.authenticate(
            dict(decision.consumer) if decision.consumer is not None else None,
            dict(decision.credential) if decision.credential is not None else None,
        )


class Plugin:
    """One instance per plugin config (Kong starts a new one whenever the config changes)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.gateway = Gateway(config)
        if self.gateway.error is not None:
            log.error("invalid configuration, every request will be refused: %s", self.gateway.error)
        elif self.gateway.config is not None:
            for warning in warnings(self.gateway.config):
                log.warning("%s", warning)

    def access(self, kong: Any) -> None:
        try:
            decision = self.gateway.handle(KongRequest(kong))
        except Exception as exc:  # noqa: BLE001 - an escaped exception would be a bypass
            # The message may quote request data; log where it happened, not what it said.
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("unexpected %s at %s:%s", type(exc).__name__, frame.filename, frame.lineno)
            return _exit(kong, render(InternalError(), None, KongRequest(kong)))
        if isinstance(decision, Response):
            return _exit(kong, decision)
        return _let_through(kong, decision)

    def close(self) -> None:
        """Release what the instance holds (Kong closed it and no request uses it any more)."""
        self.gateway.close()
