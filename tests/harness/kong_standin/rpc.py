"""MsgPack:1 RPC client, as Kong's kong/runloop/plugin_servers/rpc/mp_rpc.lua does it.

* request ``[0, msgid, "plugin.<Method>", [args...]]``, response ``[1, msgid, err, result]``;
  notifications ``[2, label, args]`` are ignored;
* ``msgid`` is a per-plugin-server counter;
* connections are pooled (Kong: ``ngx.socket.connect`` + ``setkeepalive``);
* a read timeout or EOF gives the error ``"no data"`` (the connection is then discarded);
* strings are packed as msgpack str, ``bytes`` (raw bodies, Kong's ``fix_raw``) as bin;
  unpacking uses ``raw=False``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import msgpack

from .pdk import WireBytes

# the outcome of a call, as Kong's Rpc:call returns it: (result, error string or None)
Reply = tuple[Any, Any]


class RpcError(Exception):
    pass


class _Conn:
    def __init__(self, path: str, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _has_wire_bytes(value: object) -> bool:
    if isinstance(value, WireBytes):
        return True
    if isinstance(value, dict):
        return any(_has_wire_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_wire_bytes(v) for v in value)
    return False


def pack(frame: object) -> bytes:
    """Kong packs Lua strings as msgpack str and raw bodies as bin. A frame carrying request header
    bytes (WireBytes) is packed with every bytes value as str, invalid UTF-8 included, as Kong does;
    raw bodies (bin) never travel in the same frame."""
    packed: bytes = msgpack.packb(frame, use_bin_type=not _has_wire_bytes(frame))
    return packed


class RpcClient:
    def __init__(self, socket_path: str, timeout: float) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._msg_id = 0
        self._lock = threading.Lock()
        self._pool: list[_Conn] = []
        self._all: set[_Conn] = set()
        self.closed = False

    def _next_id(self) -> int:
        with self._lock:
            self._msg_id += 1
            return self._msg_id

    def _get_conn(self) -> _Conn:
        with self._lock:
            if self._pool:
                return self._pool.pop()
        conn = _Conn(self.socket_path, self.timeout)
        with self._lock:
            self._all.add(conn)
        return conn

    def _release(self, conn: _Conn, reusable: bool) -> None:
        with self._lock:
            if reusable and not self.closed:
                self._pool.append(conn)
                return
            self._all.discard(conn)
        conn.close()

    def call(self, method: str, *args: Any) -> Reply:
        """Returns ``(result, err)`` like Kong's ``Rpc:call``: err is a string or None."""
        return self.call_with(None, method, *args)

    def call_with(self, on_frame: Callable[[str, Any], None] | None, method: str, *args: Any) -> Reply:
        msg_id = self._next_id()
        try:
            conn = self._get_conn()
        except OSError as e:
            return None, f"trying to connect: {e}"
        frame = [0, msg_id, method, list(args)]
        if on_frame:
            on_frame("out", frame)
        try:
            conn.sock.sendall(pack(frame))
        except OSError as e:
            self._release(conn, False)
            return None, str(e)
        while True:
            for msg in conn.unpacker:
                if on_frame:
                    on_frame("in", msg)
                if not isinstance(msg, list) or not msg:
                    self._release(conn, False)
                    return None, "unexpected RPC frame"
                if msg[0] == 2:
                    continue  # notification: Kong only knows "serverPid"; kong-pdk never sends one
                if msg[0] != 1 or len(msg) != 4 or msg[1] != msg_id:
                    # STRICTER: Kong does not check the msgid; a mismatch means a desynchronised stream
                    self._release(conn, False)
                    return None, f"unexpected RPC response {msg!r} for msgid {msg_id}"
                self._release(conn, True)
                return msg[3], msg[2]
            try:
                data = conn.sock.recv(65536)
            except (socket.timeout, OSError):
                data = b""
            if not data:
                self._release(conn, False)
                return None, "no data"
            conn.unpacker.feed(data)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            conns = list(self._all)
            self._all.clear()
            self._pool.clear()
        for c in conns:
            c.close()
