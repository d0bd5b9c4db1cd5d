"""Validation of a plugin's dumped ``Schema`` like Kong's ``MetaSchema.MetaSubSchema``
(kong/db/schema/metaschema.lua). Errors raise ConfigError naming the field path.

Where the harness is stricter than Kong it says so in a comment.
"""

from __future__ import annotations

from typing import Any, NoReturn

from .errors import ConfigError
from .luapattern import lua_to_re
from .normalize import format_errors, validate_default

VALID_TYPES = {"string", "number", "integer", "boolean", "array", "set", "map", "record", "foreign", "json", "function"}
NOT_JSON_USABLE = {"function", "foreign"}

REQUIRED_COMPANIONS = {
    "array": ("elements",),
    "set": ("elements",),
    "map": ("keys", "values"),
    "record": ("fields",),
    "json": ("json_schema",),
}

GENERAL_ATTRS = {
    "type",
    "required",
    "reference",
    "description",
    "examples",
    "auto",
    "unique",
    "unique_across_ws",
    "on_delete",
    "default",
    "abstract",
    "generate_admin_api",
    "immutable",
    "err",
    "encrypted",
    "referenceable",
    "json_schema",
    "elements",
    "keys",
    "values",
    "fields",
    "entity_checks",
    "shorthand_fields",
}
VALIDATOR_ATTRS = {
    "between",
    "eq",
    "ne",
    "gt",
    "len_eq",
    "len_min",
    "len_max",
    "match",
    "not_match",
    "match_all",
    "match_none",
    "match_any",
    "starts_with",
    "one_of",
    "not_one_of",
    "contains",
    "is_regex",
    "timestamp",
    "uuid",
    "custom_validator",
    "mutually_exclusive_subsets",
}
ALLOWED_ATTRS = GENERAL_ATTRS | VALIDATOR_ATTRS

_STR = {"string"}
_NUM = {"integer", "number"}
_LEN = {"array", "set", "string", "map"}
ATTRIBUTE_TYPES = {
    # Kong's metaschema attribute_types:
    "between": _NUM,
    "len_eq": _LEN,
    "match": _STR,
    "one_of": {"string", "number", "integer"},
    "contains": {"array", "set"},
    "is_regex": _STR,
    "timestamp": _NUM,
    "uuid": _STR,
    "unique": {"string", "number", "integer", "foreign"},
    "abstract": {"string", "number", "integer", "record", "array", "set", "map"},
    # STRICTER than Kong (Kong does not restrict these, but they would fail at run time on other types):
    "len_min": _LEN,
    "len_max": _LEN,
    "not_match": _STR,
    "match_all": _STR,
    "match_none": _STR,
    "match_any": _STR,
    "starts_with": _STR,
    "not_one_of": {"string", "number", "integer"},
    "gt": _NUM,
    "mutually_exclusive_subsets": {"set", "array"},
}


def _err(path: str, msg: str) -> NoReturn:
    raise ConfigError(f"schema violation: {path}: {msg}")


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_pattern(path: str, attr: str, pattern: object) -> None:
    if not isinstance(pattern, str):
        _err(f"{path}.{attr}", "expected a string")
    try:
        lua_to_re(pattern)
    except ValueError as e:
        # STRICTER: Lua patterns the harness cannot translate are rejected.
        _err(f"{path}.{attr}", f"Lua pattern not supported by the stand-in: {e}")


def validate_field(path: str, fdef: Any) -> None:
    if not isinstance(fdef, dict):
        _err(path, "expected a record")
    if "type" not in fdef:
        _err(f"{path}.type", "required field missing")
    t = fdef["type"]
    if t not in VALID_TYPES:
        _err(f"{path}.type", "expected one of: " + ", ".join(sorted(VALID_TYPES)))
    if t in NOT_JSON_USABLE:
        _err(f"{path}.type", f"type '{t}' cannot be expressed by an external plugin")
    for attr in fdef:
        if attr not in ALLOWED_ATTRS:
            _err(f"{path}.{attr}", "unknown field")
    for comp in REQUIRED_COMPANIONS.get(t, ()):
        if comp not in fdef:
            _err(path, f"field of type '{t}' must declare '{comp}'")
    for attr, types in ATTRIBUTE_TYPES.items():
        if attr in fdef and t not in types:
            _err(f"{path}.{attr}", f"'{attr}' is not allowed on fields of type '{t}'")
    if "custom_validator" in fdef:
        _err(f"{path}.custom_validator", "a Lua function cannot be supplied by an external plugin")
    if "entity_checks" in fdef or "shorthand_fields" in fdef:
        # STRICTER: these need Lua functions / entity-level context
        _err(path, "entity_checks/shorthand_fields are not supported for external plugin fields")
    # attribute value types
    if "description" in fdef:
        d = fdef["description"]
        if not isinstance(d, str):
            _err(f"{path}.description", "expected a string")
        if len(d) < 10:
            _err(f"{path}.description", "length must be at least 10")
        if len(d) > 500:
            _err(f"{path}.description", "length must be at most 500")
    for attr in (
        "required",
        "unique",
        "auto",
        "immutable",
        "encrypted",
        "referenceable",
        "abstract",
        "uuid",
        "timestamp",
        "is_regex",
        "unique_across_ws",
        "generate_admin_api",
    ):
        if attr in fdef and not isinstance(fdef[attr], bool):
            _err(f"{path}.{attr}", "expected a boolean")
    if "between" in fdef:
        b = fdef["between"]
        if not (isinstance(b, list) and len(b) == 2 and all(_is_num(x) for x in b)):
            _err(f"{path}.between", "expected an array of two numbers")
    for attr in ("len_eq", "len_min", "len_max"):
        if attr in fdef and not (isinstance(fdef[attr], int) and not isinstance(fdef[attr], bool) and fdef[attr] >= 0):
            _err(f"{path}.{attr}", "expected an integer")
    if "gt" in fdef and not _is_num(fdef["gt"]):
        _err(f"{path}.gt", "expected a number")
    for attr in ("one_of", "not_one_of"):
        if attr in fdef:
            v = fdef[attr]
            if not isinstance(v, list) or not v:
                _err(f"{path}.{attr}", "expected a non-empty array")
    if "starts_with" in fdef and not isinstance(fdef["starts_with"], str):
        _err(f"{path}.starts_with", "expected a string")
    for attr in ("match", "not_match"):
        if attr in fdef:
            _check_pattern(path, attr, fdef[attr])
    for attr in ("match_all", "match_none"):
        if attr in fdef:
            if not isinstance(fdef[attr], list):
                _err(f"{path}.{attr}", "expected an array")
            for i, m in enumerate(fdef[attr], 1):
                if not isinstance(m, dict) or "pattern" not in m or set(m) - {"pattern", "err"}:
                    _err(f"{path}.{attr}[{i}]", "expected a record with 'pattern' (and 'err')")
                _check_pattern(f"{path}.{attr}[{i}]", "pattern", m["pattern"])
    if "match_any" in fdef:
        m = fdef["match_any"]
        if not isinstance(m, dict) or not isinstance(m.get("patterns"), list) or set(m) - {"patterns", "err"}:
            _err(f"{path}.match_any", "expected a record with 'patterns' (and 'err')")
        for i, p in enumerate(m["patterns"], 1):
            _check_pattern(f"{path}.match_any.patterns[{i}]", "pattern", p)
    # recurse
    if t in ("array", "set"):
        validate_field(f"{path}.elements", fdef["elements"])
    elif t == "map":
        validate_field(f"{path}.keys", fdef["keys"])
        validate_field(f"{path}.values", fdef["values"])
    elif t == "record":
        validate_fields(path, fdef["fields"])
    # default must validate against the field itself
    if "default" in fdef and fdef["default"] is not None:
        errors = validate_default(fdef, f"{path}.default")
        if errors:
            _err(f"{path}.default", format_errors(errors))


def validate_fields(path: str, fields: Any) -> None:
    if not isinstance(fields, list):
        _err(f"{path}.fields", "expected an array")
    names = set()
    for i, entry in enumerate(fields, 1):
        if not isinstance(entry, dict) or len(entry) != 1:
            _err(f"{path}.fields[{i}]", "each field entry must be a table with a single key (the field name)")
        ((name, fdef),) = entry.items()
        if not isinstance(name, str):
            _err(f"{path}.fields[{i}]", "field name must be a string")
        if name in names:
            _err(f"{path}.{name}", "duplicate field name")
        names.add(name)
        validate_field(f"{path}.{name}" if path else name, fdef)


def validate_plugin_schema(schema: Any, plugin_name: str) -> dict[str, Any]:
    """Validate the dumped ``Schema`` object; returns the ``config`` record field definition."""
    where = f"plugin '{plugin_name}' schema"
    if not isinstance(schema, dict):
        raise ConfigError(f"{where}: expected a record")
    for k in schema:
        if k not in ("name", "fields"):
            raise ConfigError(f"{where}: {k}: unknown field")
    if not isinstance(schema.get("name"), str):
        raise ConfigError(f"{where}: name: required field missing")
    if schema["name"] != plugin_name:
        raise ConfigError(f"{where}: name '{schema['name']}' does not match plugin name")
    fields = schema.get("fields")
    if (
        not isinstance(fields, list)
        or len(fields) != 1
        or not isinstance(fields[0], dict)
        or list(fields[0]) != ["config"]
    ):
        raise ConfigError(f'{where}: fields must be [{{"config": {{...}}}}]')
    config = fields[0]["config"]
    if not isinstance(config, dict) or config.get("type") != "record" or "fields" not in config:
        raise ConfigError(f"{where}: config must be a record with fields")
    try:
        validate_field("config", config)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return config
