"""python -m tests.harness.kong_standin --config kong/kong.yaml --port 8000 [--trusted-ip CIDR ...]
[--host-map host:port=127.0.0.1:port ...] [--rpc-timeout S] [--workers N]

KONG_* settings are taken from os.environ. Logs go to stderr. Runs until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from . import ConfigError, KongStandIn, load_declarative


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.harness.kong_standin")
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--trusted-ip", action="append", default=[])
    ap.add_argument("--host-map", action="append", default=[])
    ap.add_argument("--rpc-timeout", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    host_map = {}
    for item in a.host_map:
        k, _, v = item.partition("=")
        host_map[k] = v
    kong = KongStandIn(
        dict(os.environ),
        load_declarative(a.config),
        trusted_ips=a.trusted_ip,
        rpc_timeout=a.rpc_timeout,
        workers=a.workers,
        host_map=host_map,
        listen_port=a.port,
    )
    printed = [0, 0]

    def log_tail() -> None:
        for level, msg in kong.error_log[printed[0] :]:
            print(f"[{level}] {msg}", file=sys.stderr, flush=True)
        printed[0] = len(kong.error_log)

    try:
        kong.start()
    except ConfigError as e:
        log_tail()
        print(f"Error: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"kong stand-in listening on {kong.proxy_url}", file=sys.stderr, flush=True)
    while not stop.wait(0.2):
        log_tail()
        for rec in kong.requests[printed[1] :]:
            if rec.status is not None:
                print(
                    f"[access] {rec.method} {rec.path} -> {rec.status} proxied={rec.proxied} failures={rec.failures}",
                    file=sys.stderr,
                    flush=True,
                )
                printed[1] += 1
            else:
                break
    kong.stop()
    log_tail()
    return 0


if __name__ == "__main__":
    sys.exit(main())
