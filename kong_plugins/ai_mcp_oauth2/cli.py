"""Entry point of the ``ai-mcp-oauth2`` console script.

With ``-g``/``--gevent`` the process is monkey-patched *before* anything else is imported:
kong-pdk runs events as greenlets but never patches, so without this one slow call to the
authorization server would stall every request of the plugin server, and requests stalled past
Kong's RPC timeout are proxied by Kong unauthenticated. Patched, blocking I/O yields instead.
"""

from __future__ import annotations

import sys


def main() -> None:
    if any(arg in ("-g", "--gevent") for arg in sys.argv[1:]):
        from gevent import monkey

        monkey.patch_all()
    from .plugin import main as serve

    serve()


if __name__ == "__main__":
    main()
