"""Plugin config normalisation/validation with Kong's schema-engine semantics (kong/db/schema/init.lua).

* missing field with ``default`` -> the default (deep copy), then validated like a user value;
* missing non-required field without default -> ``None`` (JSON null in the Config string);
* missing non-required ``record`` without default -> ``None`` (its own defaults are NOT filled);
  a missing *required* record is processed from ``{}`` so its defaults are filled (Kong's
  ``should_recurse = field.required or value ~= nil``);
* explicit ``null`` is treated like a missing value;
* errors use Kong's messages ("required field missing", "unknown field", "expected a string", ...).

Errors are collected as a list of ``(path, message)``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from .luapattern import lua_find

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# a field definition of a Kong schema, and the (path, message) list errors are collected in
FieldDef = dict[str, Any]
Errors = list[tuple[str, str]]

TYPE_ERRORS = {
    "string": "expected a string",
    "integer": "expected an integer",
    "number": "expected a number",
    "boolean": "expected a boolean",
    "array": "expected an array",
    "set": "expected a set",
    "map": "expected a map",
    "record": "expected a record",
}


def _fmt(v: object) -> str:
    """Render a value the way Lua's tostring/%s would for messages."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _join(path: str, name: object) -> str:
    return f"{path}.{name}" if path else str(name)


def field_items(fields: list[dict[str, FieldDef]]) -> Iterator[tuple[str, FieldDef]]:
    """Iterate a Kong ``fields`` array of single-key dicts -> (name, def)."""
    for entry in fields:
        ((name, fdef),) = entry.items()
        yield name, fdef


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))  # Lua '#' counts bytes
    return len(value)


def _check_type(fdef: FieldDef, value: Any, path: str, errors: Errors) -> tuple[bool, Any]:
    """Returns (ok, coerced_value)."""
    t = fdef["type"]
    if t == "string":
        ok = isinstance(value, str)
    elif t == "integer":
        if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, float) and value.is_integer():
            value = int(value)  # Lua/cjson: an integral number encodes as an integer
    elif t == "boolean":
        ok = isinstance(value, bool)
    elif t in ("array", "set"):
        ok = isinstance(value, list)
    elif t in ("map", "record"):
        ok = isinstance(value, dict)
    elif t == "json":
        ok = True  # APPROXIMATION: json_schema is not evaluated
    else:
        ok = False
    if not ok:
        errors.append((path, TYPE_ERRORS.get(t, f"expected a {t}")))
    return ok, value


def normalize_value(fdef: FieldDef, value: Any, path: str, errors: Errors) -> Any:
    ok, value = _check_type(fdef, value, path, errors)
    if not ok:
        return value
    t = fdef["type"]
    n_err = len(errors)
    if t in ("array", "set"):
        out: list[Any] = []
        for i, el in enumerate(value, start=1):
            if el is None:
                errors.append((f"{path}[{i}]", "required field missing"))
                continue
            v = normalize_value(fdef["elements"], el, f"{path}[{i}]", errors)
            if t == "set" and v in out:
                continue  # sets are de-duplicated
            out.append(v)
        value = out
    elif t == "map":
        out_map: dict[str, Any] = {}
        for k, v in value.items():
            normalize_value(fdef["keys"], k, f"{path}.{k}", errors)
            if v is None:
                errors.append((f"{path}.{k}", "required field missing"))
                continue
            out_map[k] = normalize_value(fdef["values"], v, f"{path}.{k}", errors)
        value = out_map
    elif t == "record":
        value = normalize_record(fdef["fields"], value, path, errors)
    if len(errors) == n_err:
        _run_validators(fdef, value, path, errors)
    return value


def normalize_record(fields: list[dict[str, FieldDef]], value: Any, path: str, errors: Errors) -> Any:
    if not isinstance(value, dict):
        errors.append((path, "expected a record"))
        return value
    out: dict[str, Any] = {}
    known = set()
    for name, fdef in field_items(fields):
        known.add(name)
        fpath = _join(path, name)
        v = value.get(name)
        if v is None:
            if "default" in fdef and fdef["default"] is not None:
                v = copy.deepcopy(fdef["default"])
            elif fdef.get("type") == "record" and fdef.get("required"):
                v = {}
            elif fdef.get("required"):
                errors.append((fpath, "required field missing"))
                continue
            else:
                out[name] = None
                continue
        out[name] = normalize_value(fdef, v, fpath, errors)
    for k in value:
        if k not in known:
            errors.append((_join(path, k), "unknown field"))
    return out


def _run_validators(fdef: FieldDef, value: Any, path: str, errors: Errors) -> None:
    def err(msg: str) -> None:
        errors.append((path, msg))

    t = fdef["type"]
    if t == "string" and "len_min" not in fdef and len(value) == 0:
        # Kong: empty strings are rejected by default
        return err("length must be at least 1")
    if "eq" in fdef and value != fdef["eq"]:
        return err("value must be %s" % _fmt(fdef["eq"]))
    if "ne" in fdef and value == fdef["ne"]:
        return err("value must not be %s" % _fmt(fdef["ne"]))
    if "not_one_of" in fdef and value in fdef["not_one_of"]:
        return err("must not be one of: %s" % ", ".join(_fmt(x) for x in fdef["not_one_of"]))
    if "one_of" in fdef and value not in fdef["one_of"]:
        return err("expected one of: %s" % ", ".join(_fmt(x) for x in fdef["one_of"]))
    if "gt" in fdef and not value > fdef["gt"]:
        return err("value must be greater than %s" % _fmt(fdef["gt"]))
    if fdef.get("timestamp") and not (isinstance(value, (int, float)) and value >= 0):
        return err("expected a valid timestamp")
    if fdef.get("uuid") and not UUID_RE.match(value):
        return err("expected a valid UUID")
    if fdef.get("is_regex"):
        try:
            re.compile(value)  # APPROXIMATION: PCRE checked with Python re
        except re.error:
            return err("not a valid regex: %s" % value)
    if "between" in fdef:
        lo, hi = fdef["between"]
        if not lo <= value <= hi:
            return err("value should be between %s and %s" % (_fmt(lo), _fmt(hi)))
    if "len_eq" in fdef and _length(value) != fdef["len_eq"]:
        return err("length must be %s" % _fmt(fdef["len_eq"]))
    if "len_min" in fdef and _length(value) < fdef["len_min"]:
        return err("length must be at least %s" % _fmt(fdef["len_min"]))
    if "len_max" in fdef and _length(value) > fdef["len_max"]:
        return err("length must be at most %s" % _fmt(fdef["len_max"]))
    if "starts_with" in fdef and not value.startswith(fdef["starts_with"]):
        return err("should start with: %s" % fdef["starts_with"])
    if "not_match" in fdef and lua_find(fdef["not_match"], value):
        return err("invalid value: %s" % value)
    for m in fdef.get("match_none", []):
        if lua_find(m["pattern"], value):
            return err(m.get("err", "invalid value: %s" % value))
    if "match" in fdef and not lua_find(fdef["match"], value):
        return err("invalid value: %s" % value)
    for m in fdef.get("match_all", []):
        if not lua_find(m["pattern"], value):
            return err(m.get("err", "invalid value: %s" % value))
    if "match_any" in fdef:
        ma = fdef["match_any"]
        if not any(lua_find(p, value) for p in ma["patterns"]):
            return err(ma.get("err", "invalid value: %s" % value))
    if "contains" in fdef and fdef["contains"] not in value:
        return err("expected to contain: %s" % _fmt(fdef["contains"]))
    if "mutually_exclusive_subsets" in fdef:
        hit = [s for s in fdef["mutually_exclusive_subsets"] if any(v in s for v in value)]
        if len(hit) > 1:
            return err(
                "these sets are mutually exclusive: %s" % ", ".join("(" + ", ".join(map(str, s)) + ")" for s in hit)
            )
    return None


def validate_default(fdef: FieldDef, path: str) -> Errors:
    """Validate a field's ``default`` against the field itself."""
    errors: Errors = []
    normalize_value(fdef, copy.deepcopy(fdef["default"]), path, errors)
    return errors


def format_errors(errors: Errors) -> str:
    return "; ".join(f"{p}: {m}" for p, m in errors)
