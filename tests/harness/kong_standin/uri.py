"""kong.tools.uri.normalize: decode percent-encoded unreserved characters (upper-case the hex of
the others), merge slashes, remove dot segments (RFC 3986 §5.2.4)."""

from __future__ import annotations

import re

_PCT = re.compile(r"%([0-9a-fA-F]{2})")
_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _decode_unreserved(m: re.Match[str]) -> str:
    ch = chr(int(m.group(1), 16))
    return ch if ch in _UNRESERVED else "%" + m.group(1).upper()


def remove_dot_segments(path: str) -> str:
    inp = path
    out: list[str] = []
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = inp[2:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = inp[3:]
            if out:
                out.pop()
        elif inp == "/..":
            inp = "/"
            if out:
                out.pop()
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            idx = inp.find("/", start)
            if idx == -1:
                idx = len(inp)
            out.append(inp[:idx])
            inp = inp[idx:]
    return "".join(out)


def normalize(path: str, merge_slashes: bool = True) -> str:
    path = _PCT.sub(_decode_unreserved, path)
    if merge_slashes:
        path = re.sub(r"/{2,}", "/", path)
    path = remove_dot_segments(path)
    return path or "/"
