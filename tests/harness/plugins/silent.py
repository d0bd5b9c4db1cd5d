#!/usr/bin/env python3
"""Self-test plugin whose access handler raises: kong-pdk then never replies to HandleEvent
(the "silent plugin" case; Kong fails open after its socket read timeout)."""

from typing import Any

import kong_pdk.cli

version = "0.0.1"
priority = 900
Schema = ()


class Plugin(object):
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        raise RuntimeError("boom: silent plugin never answers")


if __name__ == "__main__":
    kong_pdk.cli.start_dedicated_server("silent", Plugin, version, priority, list(Schema))
