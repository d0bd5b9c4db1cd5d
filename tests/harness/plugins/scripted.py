#!/usr/bin/env python3
"""Self-test plugin: its config ``script`` (a JSON list of ``[method, [args...]]``) lists PDK calls to
make in the access phase, in order. A call to kong.response.exit/error ends the handler (returned).
With ``echo_results`` the results received are sent upstream as header ``x-scripted-results`` (JSON;
bytes as {"bytes": hex})."""

import json
from typing import Any

import kong_pdk.cli

version = "1.2.3"
priority = 1000
Schema = (
    {"script": {"type": "string", "required": True}},
    {"echo_results": {"type": "boolean", "default": False}},
    {"label": {"type": "string"}},
)


def _resolve(kong: Any, method: str) -> Any:
    obj = kong
    for part in method.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _enc(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    return v


class Plugin(object):
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> Any:
        results = []
        for method, args in json.loads(self.config["script"]):
            fn = _resolve(kong, method)
            if method in ("kong.response.exit", "kong.response.error"):
                return fn(*args)
            ret = fn(*args)
            results.append(_enc(ret[0] if isinstance(ret, tuple) else ret))
        if self.config.get("echo_results"):
            kong.service.request.set_header("x-scripted-results", json.dumps(results))


if __name__ == "__main__":
    kong_pdk.cli.start_dedicated_server("scripted", Plugin, version, priority, list(Schema))
