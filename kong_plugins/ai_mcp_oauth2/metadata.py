"""RFC 9728: the protected resource metadata document and the URL that points to it.

- §2: ``resource`` is REQUIRED; ``authorization_servers``, ``scopes_supported`` and
  ``bearer_methods_supported`` are optional members; §3.2: "parameters with zero values
  MUST be omitted" and the response is ``application/json``.
- §3.1: the document lives at ``/.well-known/oauth-protected-resource`` inserted between the
  host and the path of the resource. Kong's default is the suffixed form
  ``<resource path>/.well-known/oauth-protected-resource``; both are served (behaviour §3), and
  MCP clients of spec 2025-11-25 probe the inserted form first.
- §3.3: ``resource`` is echoed verbatim from the config, so it matches what clients requested.
- §5.1: the ``resource_metadata`` URL in challenges is absolute; its origin comes from Kong's
  forwarded getters, so ``X-Forwarded-*`` counts only from Kong's trusted proxies.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from . import scopes
from .errors import JSON, Response
from .jwks import ASYMMETRIC_ALGS
from .schema import Config

WELL_KNOWN = "/.well-known/oauth-protected-resource"
CACHE_CONTROL = "public, max-age=300"
CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}
_HOST = re.compile(r"^(?:[A-Za-z0-9\-._~]+|\[[0-9A-Fa-f:.]+\])$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def paths(config: Config) -> tuple[str, frozenset[str]]:
    """Where the document is served: the path challenges point to, and every path that serves it.

    RFC 9728 §3.1 inserts the well-known path between the host and the resource's path (a
    terminating slash after the host is removed); Kong's default is the suffixed form, which
    ``metadata_endpoint`` replaces. Both the pointed-to path and the inserted form are served.
    """
    resource_path = urlsplit(config.resource).path
    if resource_path in ("", "/"):
        inserted = suffixed = WELL_KNOWN
    else:
        inserted = WELL_KNOWN + resource_path
        suffixed = resource_path.rstrip("/") + WELL_KNOWN
    primary = config.metadata_endpoint or suffixed
    return primary, frozenset({primary, inserted})


def document(config: Config) -> bytes:
    """The metadata document (RFC 9728 §2), serialised once per plugin instance."""
    body: dict[str, object] = {
        "resource": config.resource,
        "authorization_servers": list(config.authorization_servers),
    }
    advertised = scopes.advertised(config.scopes_supported)  # never offline_access (MCP 2026-07-28)
    if advertised:
        body["scopes_supported"] = list(advertised)
    body["bearer_methods_supported"] = ["header"]
    if config.proof_of_possession_dpop != "off":  # RFC 9728 §2, RFC 9449 §5.1
        body["dpop_signing_alg_values_supported"] = list(ASYMMETRIC_ALGS)
        if config.proof_of_possession_dpop == "strict":
            body["dpop_bound_access_tokens_required"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def metadata_response(body: bytes) -> Response:
    """200 with the document; public, cacheable, and readable cross-origin by browser clients."""
    return Response(
        200,
        {"Content-Type": JSON, "Cache-Control": CACHE_CONTROL, **CORS_HEADERS},
        body,
    )


def preflight_response(request_headers: str | None) -> Response:
    """A CORS preflight answer for the metadata paths (browser MCP clients send custom headers)."""
    headers = {
        **CORS_HEADERS,
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Max-Age": "86400",
    }
    if request_headers and re.fullmatch(r"[A-Za-z0-9\-_, ]{1,512}", request_headers):
        headers["Access-Control-Allow-Headers"] = request_headers
    return Response(204, headers, b"")


def origin(config: Config, scheme: object, host: object, port: object) -> str:
    """``scheme://host[:port]`` from Kong's forwarded getters, falling back to ``resource``'s origin.

    Values that could not have come from a valid request are replaced, so nothing a client sends
    can break the quoted header value: an unknown scheme by the resource's scheme (the forwarded
    host and port are kept), a port out of range by the scheme's default, and a host with
    characters outside RFC 3986's reg-name or IP literal by the resource's whole origin.
    """
    fallback = urlsplit(config.resource)
    if not isinstance(scheme, str) or scheme.lower() not in _DEFAULT_PORTS:
        scheme = fallback.scheme
    scheme = scheme.lower()
    if not isinstance(host, str) or not _HOST.match(host):
        return f"{fallback.scheme}://{fallback.netloc.rpartition('@')[2]}"
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        port = _DEFAULT_PORTS[scheme]
    if port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host.lower()}"
    return f"{scheme}://{host.lower()}:{port}"
