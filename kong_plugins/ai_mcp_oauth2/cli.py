"""Entry point of the ``ai-mcp-oauth2`` console script.

The plugin server runs kong-pdk's gevent mode by default, monkey-patched *before* anything else
is imported. The benchmark's mode comparison (``modes`` in docs/bench/results.json) shows why:
it is the faster mode, and once patched a slow authorization server blocks only the requests
that wait on it. kong-pdk itself never patches, so its plain ``-g`` would let one slow call
stall every request, and requests stalled past Kong's RPC timeout are proxied by Kong
unauthenticated.

``--threads`` selects kong-pdk's thread mode instead (one OS thread per event).
"""

from __future__ import annotations

import sys
import warnings


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="kong_pdk")
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*getdefaultlocale.*")
    args = sys.argv[1:]
    if "--threads" in args:
        sys.argv.remove("--threads")
    elif not any(arg in ("-m", "--multiprocessing") for arg in args):
        if not any(arg in ("-g", "--gevent") for arg in args):
            sys.argv.append("-g")
        from gevent import monkey

        monkey.patch_all()
    from .pluginserver import main as serve

    serve()


if __name__ == "__main__":
    main()
