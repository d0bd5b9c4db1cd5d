#!/usr/bin/env python3
"""The benchmark's floor: a kong-pdk dedicated plugin server that does nothing but PDK calls.

Its config ``script`` is a JSON list of ``[method, [args...]]``: the PDK calls the real plugin made
for one kind of request (recorded by the stand-in), replayed in order with the same arguments,
so ``plugin / floor`` is the plugin's own overhead. The script is parsed once per instance.

With ``decode_key`` set, it also runs one bare ``jwt.decode`` of the request's bearer token with
that key (PEM) right after the first call (``get_headers``): behaviour §11's yardstick for a
first-seen token (the same PDK calls and one decode per request).

Run as Kong runs a dedicated server: ``floor.py --kong-prefix P --socket-name bench-floor.socket
--no-lua-style [-g]`` (``--dump`` for the query command). With ``-g`` it is monkey-patched first,
like the plugin's default mode, so plugin and floor run the same process model.
"""

import sys

if "-g" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import json  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

import jwt  # noqa: E402
import kong_pdk.cli  # noqa: E402

NAME = "bench-floor"
version = "0.0.1"
priority = 1015
Schema = (
    {"script": {"type": "string", "required": True}},
    {"decode_key": {"type": "string"}},
    {"decode_alg": {"type": "string"}},
    {"audience": {"type": "string"}},
    {"issuer": {"type": "string"}},
)
TERMINAL = ("kong.response.exit", "kong.response.error")


class Plugin(object):
    def __init__(self, config: dict[str, Any]) -> None:
        self.calls = [
            (method.split(".")[1:], method in TERMINAL, args) for method, args in json.loads(config["script"])
        ]
        self.key = config.get("decode_key") or None
        self.alg = [config.get("decode_alg") or "RS256"]
        self.audience = config.get("audience")
        self.issuer = config.get("issuer")

    def access(self, kong: Any) -> Any:
        first = True
        for path, terminal, args in self.calls:
            fn = kong
            for part in path:
                fn = getattr(fn, part)
            if terminal:
                return fn(*args)
            result = fn(*args)
            if first and self.key is not None:
                first = False
                self.decode(result)

    def decode(self, headers: Any) -> None:
        try:
            value = headers["authorization"]
            token = (value[0] if isinstance(value, list) else value).split(" ", 1)[1]
            jwt.decode(token, self.key or "", algorithms=self.alg, audience=self.audience, issuer=self.issuer)
        except Exception:  # noqa: BLE001 - the floor must never change what it does
            pass


if __name__ == "__main__":
    kong_pdk.cli.start_dedicated_server(NAME, Plugin, version, priority, list(Schema))
