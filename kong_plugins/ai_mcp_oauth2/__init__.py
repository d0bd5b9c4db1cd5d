"""ai-mcp-oauth2: an OAuth 2 resource server for MCP servers, as a Kong external plugin.

Only :mod:`.pluginserver` (the process Kong starts) imports kong-pdk, and only :mod:`.plugin` uses its
``kong`` PDK object; everything else is plain Python, testable without a socket.

"behaviour §N" (or §N.M) in docstrings, comments and tests refers to ``docs/behaviour.md`` in this
repository: what the plugin does, request by request, numbered.
"""

__version__ = "0.1.0"
NAME = "ai-mcp-oauth2"
PRIORITY = 1015
