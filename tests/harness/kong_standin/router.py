"""Route matching (Kong 3.x ``traditional_compatible`` precedence, approximated) and upstream path
building (``path_handling = "v0"``, Kong's default).

Precedence: routes with more match criteria kinds (hosts, headers, methods) first; then routes whose
matching path is a regex (by ``regex_priority`` desc); then the longest matching prefix path; ties by
declaration order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .declarative import Route

# (kind, sort key, matched path, captures) of a route's best matching path
_PathMatch = tuple[tuple[int, int, int], str, dict[str, Any]]


@dataclass
class Match:
    route: Route
    matched_path: str | None  # the route path (prefix) that matched, or None
    stripped_prefix: str | None  # the prefix removed by strip_path (for X-Forwarded-Prefix)
    postfix: str  # request path remainder after stripping
    captures: dict[str, Any]


def _host_match(patterns: list[str], host: str) -> bool:
    for p in patterns:
        if p == host:
            return True
        if p.startswith("*.") and host.endswith(p[1:]) and len(host) > len(p) - 1:
            return True
        if p.endswith(".*") and host.startswith(p[:-1]) and len(host) > len(p) - 1:
            return True
    return False


def _match_path(route: Route, path: str) -> _PathMatch | None:
    """Returns (sort_key, matched, captures) for the best path of the route or None."""
    best: _PathMatch | None = None
    cand: _PathMatch
    for kind, pat, _original in route.compiled:
        if kind == "regex":
            m = pat.match(path)
            if m:
                key = (1, route.regex_priority, 0)
                caps = {"unnamed": [m.group(0)] + list(m.groups()), "named": m.groupdict()}
                cand = (key, m.group(0), caps)
            else:
                continue
        else:
            if not path.startswith(pat):
                continue
            cand = ((0, 0, len(pat)), pat, {"unnamed": [pat], "named": {}})
        if best is None or cand[0] > best[0]:
            best = cand
    return best


def find_route(
    routes: list[Route], method: str, host: str, path: str, get_header: Callable[[str], str | None]
) -> Match | None:
    candidates: list[tuple[tuple[int, ...], Route, _PathMatch | None]] = []
    for r in routes:
        if r.service is not None and not r.service.enabled:
            continue
        if r.hosts and not _host_match(r.hosts, host):
            continue
        if r.methods and method not in r.methods:
            continue
        if r.headers:
            ok = True
            for name, values in r.headers.items():
                v = get_header(name)
                if v is None or v.lower() not in [x.lower() for x in values]:
                    ok = False
                    break
            if not ok:
                continue
        pm = None
        if r.compiled:
            pm = _match_path(r, path)
            if pm is None:
                continue
        kinds = sum(1 for x in (r.hosts, r.headers, r.methods) if x)
        path_key = pm[0] if pm else (0, 0, 0)
        candidates.append(((kinds,) + path_key + (-r.order,), r, pm))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0], reverse=True)
    _, route, pm = candidates[0]
    matched = pm[1] if pm else None
    captures = pm[2] if pm else {"unnamed": [], "named": {}}
    if route.strip_path and matched:
        postfix = path[len(matched) :]
        stripped = matched
    else:
        postfix = path
        stripped = None
    return Match(route=route, matched_path=matched, stripped_prefix=stripped, postfix=postfix, captures=captures)


def upstream_path(match: Match, service_path: str | None, request_path: str) -> str:
    """kong/router/utils.lua get_upstream_uri_v0."""
    base = service_path or "/"
    if match.route.strip_path and match.matched_path:
        postfix = match.postfix
        if postfix == "":
            if base == "/":
                return "/"
            return base
        if postfix.startswith("/"):
            if base.endswith("/"):
                return base[:-1] + postfix
            return base + postfix if base != "/" else postfix
        # postfix without a leading slash (e.g. route /api, request /apifoo)
        return base + postfix
    if base == "/":
        return request_path
    if base.endswith("/"):
        return base + request_path[1:]
    return base + request_path
