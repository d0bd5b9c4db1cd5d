"""Plugin-server process management like kong/runloop/plugin_servers/process.lua (3.9+).

* spawned as ``sh -c "exec <start_cmd>"`` as a DIRECT child (kong-pdk's watchdog exits when orphaned);
* stdout and stderr merged, each line relayed as ``[<name>:<pid>] ...``;
* respawned whenever it exits, at most once per second, until stop (rc 127 is only logged);
* SIGTERM at stop.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable


class ServerProcess:
    def __init__(
        self,
        name: str,
        start_cmd: str,
        env: dict[str, str],
        sink: Callable[[str], None],
        log: Callable[[str, str], None],
    ) -> None:
        self.name = name
        self.start_cmd = start_cmd
        self.env = env
        self.sink = sink  # gets each output line
        self.log = log  # (level, message)
        self._lock = threading.Lock()
        self._stopping = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawn_count = 0
        self._thread = threading.Thread(target=self._run, name=f"pluginserver-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            started = time.monotonic()
            with self._lock:
                if self._stopping:
                    return
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", "exec " + self.start_cmd],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                self.proc = proc
                self.spawn_count += 1
            self.log("notice", f"started pluginserver {self.name}, pid {proc.pid}")
            assert proc.stdout is not None
            with proc.stdout:
                for raw in proc.stdout:
                    self.sink(f"[{self.name}:{proc.pid}] " + raw.decode("utf-8", "replace").rstrip("\r\n"))
            rc = proc.wait()
            if rc == 127:
                self.log(
                    "err",
                    f'external pluginserver {self.name} start command {self.start_cmd} exited with "command not found"',
                )
            else:
                self.log(
                    "notice" if self._stopping else "err",
                    f"external pluginserver {self.name} terminated: exit code {rc}",
                )
            with self._lock:
                if self._stopping:
                    return
            delay = 1.0 - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def wait_for_socket(path: str, timeout: float) -> bool:
    """Poll until the unix socket accepts a connection.

    TEST CONVENIENCE: Kong itself does not wait (the wait was removed by Kong PR #11372); early requests
    to a real Kong fail to connect.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return True
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.02)
    return False
