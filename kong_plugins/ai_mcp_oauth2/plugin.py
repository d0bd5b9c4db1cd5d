"""The kong-pdk glue: the only module that knows the plugin server and the ``kong`` PDK object.

``ai-mcp-oauth2 --dump`` prints Kong's plugin-info JSON (Kong's query command); without
``--dump`` the console script serves as a kong-pdk dedicated plugin server and takes
kong-pdk's flags (``--kong-prefix``, ``--socket-name``, ``-v``, ``-g``/``-m``, …). Departures
from kong-pdk's own ``start_dedicated_server``, each for a reason:

- the socket is ``<prefix>/ai-mcp-oauth2.socket`` unless ``--socket-name`` says otherwise:
  Kong's default socket path ends in ``.socket``, kong-pdk's in ``.sock`` (Kong issue #9733);
- PDK calls return plain values (kong-pdk's ``--no-lua-style``): Kong 3.x never sends an error
  for a PDK call, so the ``(data, err)`` tuples carry nothing;
- the connection loop is the plugin's own (:func:`handle_connection`): kong-pdk's dies on a
  header byte that is not UTF-8 (Kong then proxies the request unauthenticated) and its debug
  log (``-v``) prints every RPC with its arguments, tokens included;
- ``-m`` (multiprocessing) is refused: kong-pdk pickles the handler per event, which cannot work
  with this plugin's state, and a failed event hangs the server (Kong then proxies).

Behaviour §2: Kong proxies the request when a Python handler raises, so the handler catches
everything and answers 500 itself, and after ``kong.response.exit`` makes no further PDK call.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import NAME, PRIORITY, __version__
from .errors import InternalError, Response
from .gateway import MAX_HEADERS, Gateway, Proxy, render
from .schema import SCHEMA

log = logging.getLogger("ai_mcp_oauth2")

version = __version__
priority = PRIORITY
Schema = SCHEMA

_LOG_LEVELS = ("debug", "info", "notice", "warn", "err", "crit", "alert")


class KongRequest:
    """:class:`~.gateway.RequestView` over the PDK: one round trip per question, asked once."""

    __slots__ = ("kong",)

    def __init__(self, kong: Any) -> None:
        self.kong = kong

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
        request = self.kong.request
        return request.get_forwarded_scheme(), request.get_forwarded_host(), request.get_forwarded_port()

    def log(self, level: str, message: str) -> None:
        if level in _LOG_LEVELS:
            getattr(self.kong.log, level)(message)

    def load_consumer(self, value: str, by_username: bool) -> Mapping[str, Any] | None:
        consumer = self.kong.client.load_consumer(value, by_username)
        return consumer if isinstance(consumer, dict) else None


def _exit(kong: Any, response: Response) -> None:
    kong.response.exit(response.status, response.body.decode() if response.body else None, response.headers)


def _apply(kong: Any, proxy: Proxy) -> None:
    if proxy.set_headers:
        kong.service.request.set_headers(dict(proxy.set_headers))
    for name in proxy.clear_headers:
        kong.service.request.clear_header(name)
    if proxy.consumer is not None or proxy.credential is not None:
        kong.client.authenticate(
            dict(proxy.consumer) if proxy.consumer is not None else None,
            dict(proxy.credential) if proxy.credential is not None else None,
        )


class Plugin:
    """One instance per plugin config (Kong starts a new one whenever the config changes)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.gateway = Gateway(config)
        if self.gateway.error is not None:
            log.error("invalid configuration, every request will be refused: %s", self.gateway.error)
        elif self.gateway.config is not None:
            for warning in self.gateway.config.warnings:
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
        return _apply(kong, decision)


_CAMEL = re.compile("([a-z])([A-Z])")


def _pack(message: list[Any]) -> bytes:
    import msgpack

    return msgpack.packb(message, unicode_errors="surrogateescape")  # type: ignore[no-any-return]


def handle_connection(server: Any, fd: Any, address: Any, *_: Any) -> None:
    """One plugin-server connection: kong-pdk's ``Server.handle``, made safe for any bytes from Kong.

    Kong sends Lua strings (header values, paths) as msgpack *str*, and nginx accepts bytes that are
    not UTF-8 in header values. kong-pdk's own loop unpacks with strict UTF-8, so one such byte
    raises outside any plugin code: the socket closes, Kong reads "no data" and **proxies the request
    unauthenticated**. Here strings decode with ``surrogateescape`` (no token or header check accepts
    the resulting lone surrogates) and go back out the same way. Unlike kong-pdk's loop, this one
    never logs RPC arguments, which carry request headers and tokens.
    """
    import msgpack
    from kong_pdk.exception import PDKException, PluginServerException
    from kong_pdk.listener import WrapSocket

    unpacker = msgpack.Unpacker(WrapSocket(fd), strict_map_key=False, unicode_errors="surrogateescape")
    for _kind, msgid, method, args in unpacker:
        namespace, _dot, command = str(method).partition(".")
        if namespace != "plugin" or not command:
            fd.send(_pack([1, msgid, f"RPC for {namespace} is not supported", None]))
            continue
        name = command[0].lower() + _CAMEL.sub(lambda m: f"{m.group(1)}_{m.group(2).lower()}", command[1:])
        try:
            result = getattr(server.ps, name)(*args)
            fd.send(_pack([1, msgid, None, result]))
        except (PluginServerException, PDKException) as exc:
            fd.send(_pack([1, msgid, str(exc), None]))
        except Exception as exc:  # noqa: BLE001 - answered to Kong, as kong-pdk does
            server.logger.error(f"rpc #{msgid} {method}: {type(exc).__name__}")
            fd.send(_pack([1, msgid, type(exc).__name__, None]))


def _take_request_budget(argv: list[str]) -> float | None:
    """Remove ``--request-budget SECONDS`` (ours, not kong-pdk's) from ``argv`` and return it.

    Keep it below Kong's ``lua_socket_read_timeout`` (60 s by default): past that Kong proxies.
    """
    for i, arg in enumerate(argv):
        if arg == "--request-budget" and i + 1 < len(argv) or arg.startswith("--request-budget="):
            value = argv[i + 1] if arg == "--request-budget" else arg.split("=", 1)[1]
            del argv[i : i + (2 if arg == "--request-budget" else 1)]
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not 0 < seconds < 3600:
                sys.stderr.write(f"{NAME}: --request-budget takes a number of seconds, got {value!r}\n")
                raise SystemExit(2)
            return seconds
    return None


def main() -> None:
    """Console script ``ai-mcp-oauth2``: Kong's query command (``--dump``) and start command."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="kong_pdk")
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*getdefaultlocale.*")
    import json

    from kong_pdk.cli import parse
    from kong_pdk.listener import DEFAULT_SOCKET_NAME, UnixStreamServer
    from kong_pdk.logger import Logger
    from kong_pdk.module import Module
    from kong_pdk.server import PluginServer

    budget = _take_request_budget(sys.argv)
    args = parse(dedicated=True)
    if args.multiprocessing:
        sys.stderr.write(
            f"{NAME}: -m/--multiprocessing is not supported: kong-pdk pickles the handler for every event, "
            "which this plugin's state cannot survive, and a failed event leaves Kong to proxy the request\n"
        )
        raise SystemExit(2)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")

    if budget is not None:
        from .http import set_request_budget

        set_request_budget(budget)
    server = PluginServer(
        loglevel=Logger.WARNING - args.verbose,
        use_multiprocess=args.multiprocessing,
        use_gevent=args.gevent,
        name=f"{NAME} version {__version__}",
        lua_style=False,
    )

    class module:
        pass

    module.Plugin = Plugin  # type: ignore[attr-defined]
    module.Schema = SCHEMA  # type: ignore[attr-defined]
    module.version = __version__  # type: ignore[attr-defined]
    module.priority = PRIORITY  # type: ignore[attr-defined]
    server.plugins[NAME] = Module(NAME, module=module)

    if args.dump:
        sys.stdout.write(json.dumps([server.get_plugin_info(NAME)]))
        sys.stdout.flush()
        return

    socket_name = args.socket_name
    if socket_name == DEFAULT_SOCKET_NAME:
        socket_name = f"{NAME}.socket"
    class Listener(UnixStreamServer):  # type: ignore[misc]
        handle = handle_connection  # safe for any bytes from Kong, logs no tokens

    listener = Listener(
        server,
        args.prefix,
        sock_name=socket_name,
        use_gevent=args.gevent,
        listen_queue_size=args.listen_queue_size,
    )
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
