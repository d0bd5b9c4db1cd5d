"""The plugin server Kong talks to: kong-pdk's, with this plugin's own connection loop and events.

``ai-mcp-oauth2 --dump`` prints Kong's plugin-info JSON (Kong's query command); without
``--dump`` the console script serves as a kong-pdk dedicated plugin server and takes kong-pdk's
flags (``--kong-prefix``, ``--socket-name``, ``-v``, ``-g``, …). Departures from kong-pdk's own
``start_dedicated_server``, each for a reason:

- the socket is ``<prefix>/ai-mcp-oauth2.socket`` unless ``--socket-name`` says otherwise:
  Kong's default socket path ends in ``.socket``, kong-pdk's in ``.sock`` (Kong issue #9733);
- PDK calls return plain values (kong-pdk's ``--no-lua-style``): Kong 3.x never sends an error
  for a PDK call, so the ``(data, err)`` tuples carry nothing;
- the connection loop is the plugin's own (:func:`handle_connection`): kong-pdk's dies on a
  header byte that is not UTF-8 (Kong then proxies the request unauthenticated) and its debug
  log (``-v``) prints every RPC with its arguments, tokens included;
- events are the plugin's own (:class:`EventServer`): kong-pdk's gevent mode parks the handler
  of every request the plugin answers itself (below), and kong-pdk never closes an instance;
- ``-m`` (multiprocessing) is refused: kong-pdk pickles the handler per event, which cannot work
  with this plugin's state, and a failed event hangs the server (Kong then proxies);
- a watchdog ends the process when Kong (its parent) is gone, in thread mode too (kong-pdk's
  thread-mode watchdog only ends its own thread).

**Events.** Kong runs one phase of one request as an *event*: ``plugin.HandleEvent`` starts the
handler, which calls the PDK by sending ``{Method, Args}`` back as the RPC's answer; Kong runs the
call and sends its result with ``plugin.Step``, until the handler returns (``"ret"``) or calls
``kong.response.exit``, after which **Kong never steps that event again**. kong-pdk passes those
messages through a ``gevent.queue.Channel`` in gevent mode, whose ``put`` waits for a reader: the
``"ret"`` a handler sends after ``kong.response.exit`` waits forever, and the greenlet with it
its plugin instance and everything the instance holds (about 10 KB a refused request, and every
MCP session starts with a 401). Here both directions are unbounded queues, so no ``put`` waits;
a handler waiting for a step that never comes (Kong abandons an event after a Lua error in a PDK
call) gives up after :data:`ABANDON_AFTER` seconds; and a handler that has not answered Kong
within the request budget plus :data:`REPLY_MARGIN` is answered for: the server sends Kong a 503
exit itself, so Kong's own timeout (60 s, after which it *proxies* the request) is never reached.
Both limits are kept by one reaper that looks every :data:`REAP_EVERY` seconds (a timer per message
would cost more than the message). A handler that cannot be started is a 503 as well.

**Instances.** Kong starts a new instance on every config change and closes the old one with
``plugin.CloseInstance``. The old instance's outbound connections and other resources are
released (``Plugin.close``) once the last request still using it is done.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kong_pdk.exception import PDKException, PluginServerException
from kong_pdk.pdk import Kong
from kong_pdk.server import PluginServer

from . import NAME, PRIORITY, __version__, budget, metrics
from .errors import Unavailable
from .gateway import render
from .plugin import Plugin, exit_args
from .schema import SCHEMA

log = logging.getLogger("ai_mcp_oauth2")

RET = "ret"
TERMINAL_METHODS = frozenset({"kong.response.exit", "kong.response.error"})
ABANDON_AFTER = 90.0  # seconds a handler waits for Kong's next step (Kong's own RPC timeout: 60 s)
REPLY_MARGIN = 5.0  # seconds past the request budget before the server answers for a silent handler
REAP_EVERY = 1.0  # seconds between two looks for events waiting too long
_WAKE = object()  # ends a handler's wait on an abandoned event
_SILENT = object()  # ends the server's wait on a silent handler


class EventAbandoned(BaseException):
    """Raised in a handler waiting for a step Kong will never send (not an ``Exception``, so the
    handler's catch-all does not try to answer a request that is already over)."""


class Channel:
    """The two directions of one event. The handler's side is ``put``/``get`` (what kong-pdk's
    ``Kong`` object calls); the server's side is :meth:`next_message`/:meth:`answer`.

    No wait has a timer of its own (a timer per message costs more than the message): each side
    notes when it started waiting, and :meth:`EventServer.reap` ends waits that last too long.
    """

    __slots__ = ("to_kong", "to_handler", "kong_since", "handler_since", "closed")

    def __init__(self) -> None:
        self.to_kong: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.to_handler: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.kong_since: float | None = None  # the server waits for the handler since
        self.handler_since: float | None = None  # the handler waits for Kong since
        self.closed = False

    def put(self, message: Any) -> None:
        self.to_kong.put(message)

    def get(self) -> Any:
        if self.closed:
            raise EventAbandoned()
        self.handler_since = time.monotonic()
        answer = self.to_handler.get()
        self.handler_since = None
        if answer is _WAKE:
            raise EventAbandoned()
        return answer

    def answer(self, value: Any) -> None:
        self.to_handler.put(value)

    def close(self) -> None:
        """No answer will come: the handler's current or next wait ends in :class:`EventAbandoned`."""
        self.closed = True
        self.to_handler.put(_WAKE)

    def next_message(self) -> Any:
        """The handler's next PDK call or ``"ret"``; None once the handler was found silent."""
        self.kong_since = time.monotonic()
        message = self.to_kong.get()
        self.kong_since = None
        return None if message is _SILENT else message

    def reap(self, now: float, reply_timeout: float) -> None:
        """End a wait that has lasted too long (see the module docstring)."""
        since = self.kong_since
        if since is not None and now - since > reply_timeout:
            self.to_kong.put(_SILENT)
            self.close()
        since = self.handler_since
        if since is not None and now - since > ABANDON_AFTER and not self.closed:
            self.close()


@dataclass(eq=False, slots=True)
class Event:
    channel: Channel
    instance: Any  # kong-pdk's Instance


def _guard_exit(description: str) -> dict[str, Any]:
    """What the server answers Kong for a request no handler can answer in time: a 503."""
    response = render(Unavailable(description), None, None)
    return {"Method": "kong.response.exit", "Args": exit_args(response)}


class EventServer(PluginServer):  # type: ignore[misc]
    """kong-pdk's ``PluginServer`` with events that end and instances that close (module docstring).

    ``self.events`` (kong-pdk's name) maps event ids to :class:`Event`. Handlers run in a thread
    each, which is a greenlet in the (monkey-patched) gevent mode.
    """

    def __init__(self, *args: Any, reply_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.ids = itertools.count()
        self.reply_timeout = reply_timeout
        self.handlers = 0
        self.inflight: dict[int, int] = {}  # id(instance) -> events running on it
        self.closing: dict[int, Any] = {}  # id(instance) -> closed by Kong, events still running
        if self.use_gevent:
            import gevent

            self.spawn: Callable[..., Any] = gevent.spawn
        else:
            self.spawn = _start_thread
        threading.Thread(target=_reap, args=(weakref.ref(self),), name="event-reaper", daemon=True).start()

    # --------------------------------------------------------------------- events
    def handle_event(self, event: dict[str, Any]) -> dict[str, Any]:
        iid = event["InstanceId"]
        with self.lock:  # counted in flight before a CloseInstance can see it idle
            instance = self.instances.get(iid)
            if instance is None:
                # Kong matches this text, resets its instances and retries
                raise PluginServerException(f"no plugin instance #{iid}")
            handler = getattr(instance.cls, event["EventName"])
            eid = next(self.ids)
            record = Event(Channel(), instance)
            self.events[eid] = record
            self.inflight[id(instance)] = self.inflight.get(id(instance), 0) + 1
            self.handlers += 1
        try:
            self.spawn(self._run, eid, record, handler)
        except RuntimeError:  # no thread to be had (a process limit): an RPC error would make Kong proxy
            log.error("could not start a request handler; answered 503")
            self.events.pop(eid, None)
            self._done(instance)
            return {"Data": _guard_exit("The gateway is overloaded"), "EventId": eid}
        return self._reply(eid, record)

    def _step(self, data: dict[str, Any], is_error: bool) -> dict[str, Any]:
        eid = data["EventId"]
        record = self.events.get(eid)
        if record is None:
            # An event this server no longer has (ended after ABANDON_AFTER, or a server restarted
            # under Kong): an RPC error would make Kong proxy the request, so answer it a 503.
            log.warning("Kong continued an event this server no longer has; answered 503")
            return {"Data": _guard_exit("The gateway lost track of the request"), "EventId": eid}
        value = data.get("Data")
        record.channel.answer((None, value) if is_error else (value, None))
        return self._reply(eid, record)

    def _reply(self, eid: int, record: Event) -> dict[str, Any]:
        message = record.channel.next_message()
        if message is None:
            log.error("a request handler did not answer within %.0f s; answered 503 for it", self.reply_timeout)
            message = _guard_exit("The gateway could not decide in time")
        if message == RET or (isinstance(message, dict) and message.get("Method") in TERMINAL_METHODS):
            self.events.pop(eid, None)  # Kong never steps it again
        return {"Data": message, "EventId": eid}

    def _run(self, eid: int, record: Event, handler: Callable[[Any], None]) -> None:
        try:
            handler(Kong(record.channel, False).kong)
        except EventAbandoned:
            log.warning("Kong did not continue a request's event; its handler was ended")
        except Exception as exc:  # noqa: BLE001 - Plugin.access catches everything; other phases may not
            log.error("unexpected %s in a request handler", type(exc).__name__)
        finally:
            record.channel.put(RET)  # never waits: nobody may read it
            self.events.pop(eid, None)
            self._done(record.instance)

    # --------------------------------------------------------------------- instances
    def close_instance(self, iid: int) -> dict[str, Any]:
        with self.lock:  # no event can start on it between the check and the removal
            instance = self.instances.get(iid)
            result: dict[str, Any] = super().close_instance(iid)  # raises "no plugin instance" if unknown
            busy = self.inflight.get(id(instance), 0) > 0
            if busy:
                self.closing[id(instance)] = instance
        if not busy:
            _close(instance)
        return result

    def _done(self, instance: Any) -> None:
        with self.lock:
            self.handlers -= 1
            left = self.inflight[id(instance)] - 1
            if left:
                self.inflight[id(instance)] = left
                return
            del self.inflight[id(instance)]
            closed = self.closing.pop(id(instance), None)
        if closed is not None:
            _close(closed)

    def get_status(self, *args: Any) -> dict[str, Any]:
        """kong-pdk's status, plus what the plugin server holds: running events and handlers,
        and instances Kong closed that still finish requests."""
        status: dict[str, Any] = super().get_status(*args)
        with self.lock:
            status.update(Events=len(self.events), Handlers=self.handlers, ClosingInstances=len(self.closing))
        return status


def _start_thread(target: Callable[..., None], *args: Any) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


def _reap(server: weakref.ref[EventServer]) -> None:
    """Every :data:`REAP_EVERY` seconds, end the waits that have lasted too long, while the server lives."""
    while (alive := server()) is not None:
        now = time.monotonic()
        try:
            for record in list(alive.events.values()):
                record.channel.reap(now, alive.reply_timeout)
        except Exception as exc:  # noqa: BLE001 - the reaper must outlive anything; it guards every request
            log.error("the event reaper failed once: %s", type(exc).__name__)
        del alive
        time.sleep(REAP_EVERY)


def _close(instance: Any) -> None:
    try:
        instance.cls.close()
    except Exception as exc:  # noqa: BLE001 - a failed cleanup must not fail Kong's CloseInstance
        log.warning("closing a plugin instance failed: %s", type(exc).__name__)


# ------------------------------------------------------------------------- connection loop
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


# ------------------------------------------------------------------------- start command
def _take_request_budget(argv: list[str]) -> float | None:
    """Remove ``--request-budget SECONDS`` (ours, not kong-pdk's) from ``argv`` and return it.

    Keep it below Kong's ``lua_socket_read_timeout`` (60 s by default) less :data:`REPLY_MARGIN`:
    past that Kong proxies.
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


def _take_metrics_address(argv: list[str]) -> str | None:
    """Remove ``--metrics-address HOST:PORT`` (ours, not kong-pdk's) from ``argv`` and return it
    (behaviour §11.5); a value that is not ``HOST:PORT`` is a start error."""
    for i, arg in enumerate(argv):
        if arg == "--metrics-address" and i + 1 < len(argv) or arg.startswith("--metrics-address="):
            value = argv[i + 1] if arg == "--metrics-address" else arg.split("=", 1)[1]
            del argv[i : i + (2 if arg == "--metrics-address" else 1)]
            try:
                metrics.parse_address(value)
            except ValueError as exc:
                sys.stderr.write(f"{NAME}: {exc}\n")
                raise SystemExit(2) from None
            return value
    return None


def _serve_metrics(address: str) -> None:
    """Serve ``/metrics`` on ``address`` and record to it; a start error if it cannot be bound."""
    recorder = metrics.PrometheusMetrics()
    try:
        metrics.serve(address, recorder)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{NAME}: --metrics-address {address}: cannot listen ({type(exc).__name__}: {exc})\n")
        raise SystemExit(2) from None
    metrics.install(recorder)
    log.info("serving Prometheus metrics at http://%s/metrics", address)


def _help(argv: list[str]) -> None:
    """Add this plugin server's own options to kong-pdk's ``--help``."""
    if "-h" in argv or "--help" in argv:
        import atexit

        atexit.register(
            sys.stdout.write,
            "\nai-mcp-oauth2 options:\n"
            "  --threads             kong-pdk's thread mode instead of gevent\n"
            "  --request-budget SECONDS\n"
            "                        time budget of one request's outbound work (default 45)\n"
            "  --metrics-address HOST:PORT\n"
            "                        serve Prometheus metrics at http://HOST:PORT/metrics (off by default;\n"
            "                        unauthenticated: bind it to loopback)\n",
        )


def _exit_when_orphaned() -> None:
    """End the process once Kong, its parent, is gone (it is then adopted by init)."""
    while os.getppid() != 1:
        time.sleep(1)
    log.info("Kong exited, terminating")
    os._exit(0)


def main() -> None:
    """Console script ``ai-mcp-oauth2``: Kong's query command (``--dump``) and start command."""
    import json

    from kong_pdk.cli import parse
    from kong_pdk.listener import DEFAULT_SOCKET_NAME, UnixStreamServer
    from kong_pdk.logger import Logger
    from kong_pdk.module import Module

    seconds = _take_request_budget(sys.argv)
    metrics_address = _take_metrics_address(sys.argv)
    _help(sys.argv)
    args = parse(dedicated=True)
    if args.multiprocessing:
        sys.stderr.write(
            f"{NAME}: -m/--multiprocessing is not supported: kong-pdk pickles the handler for every event, "
            "which this plugin's state cannot survive, and a failed event leaves Kong to proxy the request\n"
        )
        raise SystemExit(2)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")

    if seconds is not None:
        budget.set_request_budget(seconds)
    server = EventServer(
        loglevel=Logger.WARNING - args.verbose,
        use_gevent=args.gevent,
        name=f"{NAME} version {__version__}",
        lua_style=False,
        reply_timeout=budget.REQUEST_BUDGET + REPLY_MARGIN,
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

    if metrics_address is not None:
        _serve_metrics(metrics_address)
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
    threading.Thread(target=_exit_when_orphaned, name="watchdog", daemon=True).start()
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
