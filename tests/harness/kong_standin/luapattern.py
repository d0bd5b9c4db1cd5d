"""Translate the common subset of Lua patterns (used by Kong's ``match*`` validators) to Python ``re``.

Supported: character classes %a %d %l %s %u %w %x %p %c (and upper-case complements), %<punct> escapes,
``.``, sets ``[...]`` / ``[^...]`` (with classes and ranges inside), quantifiers ``* + ? -``
(``-`` is lazy ``*?``), anchors ``^`` (at start) and ``$`` (at end), captures ``( )``.
Not supported (raises ValueError, so the harness is *stricter* than Kong): ``%b``, ``%f``, back-references
``%1``..``%9``, position captures ``()``.
"""

from __future__ import annotations

import re

_CLASSES = {
    "a": "A-Za-z",
    "d": "0-9",
    "l": "a-z",
    "s": r" \t\n\r\f\v",
    "u": "A-Z",
    "w": "A-Za-z0-9",
    "x": "0-9A-Fa-f",
    "p": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "c": r"\x00-\x1f\x7f",
}


def _class(ch: str, in_set: bool) -> str:
    low = ch.lower()
    if low in _CLASSES:
        body = _CLASSES[low]
        if ch.isupper():
            if in_set:
                raise ValueError("negated class %%%s inside a set is not supported" % ch)
            return "[^" + body + "]"
        return body if in_set else "[" + body + "]"
    if ch.isalnum():
        raise ValueError("unsupported Lua pattern item %%%s" % ch)
    return re.escape(ch)


def lua_to_re(pattern: str) -> str:
    out = []
    i, n = 0, len(pattern)
    if pattern.startswith("^"):
        out.append(r"\A")
        i = 1
    while i < n:
        c = pattern[i]
        if c == "%":
            if i + 1 >= n:
                raise ValueError("malformed pattern (ends with '%')")
            d = pattern[i + 1]
            if d in "bf" or d.isdigit():
                raise ValueError("unsupported Lua pattern item %%%s" % d)
            out.append(_class(d, False))
            i += 2
        elif c == "[":
            j = i + 1
            parts = ["["]
            if j < n and pattern[j] == "^":
                parts.append("^")
                j += 1
            first = True
            while True:
                if j >= n:
                    raise ValueError("malformed pattern (missing ']')")
                ch = pattern[j]
                if ch == "]" and not first:
                    break
                first = False
                if ch == "%":
                    if j + 1 >= n:
                        raise ValueError("malformed pattern")
                    parts.append(_class(pattern[j + 1], True))
                    j += 2
                    continue
                if j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    parts.append(re.escape(ch) + "-" + re.escape(pattern[j + 2]))
                    j += 3
                    continue
                parts.append(re.escape(ch) if ch not in "^" else r"\^")
                j += 1
            parts.append("]")
            out.append("".join(parts))
            i = j + 1
        elif c == "$" and i == n - 1:
            out.append(r"\Z")
            i += 1
        elif c == "(":
            if i + 1 < n and pattern[i + 1] == ")":
                raise ValueError("position captures are not supported")
            out.append("(")
            i += 1
        elif c == ")":
            out.append(")")
            i += 1
        elif c == ".":
            out.append("(?s:.)")
            i += 1
        elif c in "*+?":
            if not out:
                out.append(re.escape(c))
            else:
                out.append(c)
            i += 1
        elif c == "-":
            if out and out[-1] not in ("(", r"\A"):
                out.append("*?")
            else:
                out.append(re.escape(c))
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def compile_lua(pattern: str) -> re.Pattern[str]:
    return re.compile(lua_to_re(pattern))


def lua_find(pattern: str, value: str) -> bool:
    """string.find(value, pattern) ~= nil"""
    return compile_lua(pattern).search(value) is not None
