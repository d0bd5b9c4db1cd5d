"""The declared schema is Kong 3.14's, field by field (behaviour §1).

Compared with Kong's published JSON schema of the plugin, kept in tests/fixtures as a copy.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2 import NAME, PRIORITY, __version__
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.schema import SCHEMA, Config, TokenExchange, spec

FIXTURE = Path(__file__).parent.parent / "fixtures" / "kong-3.14-ai-mcp-oauth2.schema.json"
KONG = json.loads(FIXTURE.read_text())["properties"]["config"]


def as_dict(fields: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for entry in fields:
        assert len(entry) == 1, "Kong's schema DSL wants single-key field entries"
        ((name, definition),) = entry.items()
        out[name] = definition
    return out


def kong_fields(record: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    required = set(record.get("required", []))
    return [(name, prop, name in required) for name, prop in record["properties"].items()]


def walk(kong_record: dict[str, Any], ours: list[dict[str, Any]], path: str = "") -> list[str]:
    """Every field Kong declares, checked against ours; returns the paths compared."""
    mine = as_dict(ours)
    assert sorted(mine) == sorted(kong_record["properties"]), f"fields of {path or 'config'}"
    seen = []
    for name, prop, required in kong_fields(kong_record):
        seen.append(path + name)
        seen += check_field(path + name, prop, mine[name], required)
    return seen


def check_field(path: str, kong: dict[str, Any], mine: dict[str, Any], required: bool) -> list[str]:
    kind = kong["type"]
    expected = {"object": "record" if "properties" in kong else "map"}.get(kind, kind)
    assert mine["type"] == expected, path
    assert mine.get("required", False) == required, path
    assert mine.get("default") == kong.get("default"), path
    if "default" in kong:
        assert type(mine["default"]) is type(kong["default"]), path
    assert mine.get("one_of") == kong.get("enum"), path
    assert mine.get("len_min") == kong.get("minLength"), path
    assert mine.get("referenceable", False) == kong.get("x-referenceable", False), path
    assert mine.get("encrypted", False) == kong.get("x-encrypted", False), path
    if expected == "array":
        item = kong["items"]
        if item.get("type") == "object":
            return walk(item, mine["elements"]["fields"], path + "[].")
        else:
            assert mine["elements"]["type"] == item["type"], path
            assert mine["elements"].get("one_of") == item.get("enum"), path
    elif expected == "map":
        assert mine["keys"] == {"type": "string"}, path
        assert mine["values"]["type"] == kong["additionalProperties"]["type"], path
    elif expected == "record":
        return walk(kong, mine["fields"], path + ".")
    return []


EXTENSIONS = {
    "scopes_claim",
    "scopes_required",
    "mcp_operations",
    "scope_hierarchy",
    "mcp_trust_routing_headers",
    "cluster_cache_strategy",
    "cluster_cache_redis",
    "cluster_cache_items",
    "proof_of_possession_dpop",
    "dpop_use_nonce",
    "dpop_proof_lifetime",
}


def kongs_own(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The declared fields but the extensions beyond Kong 3.14's schema."""
    return [entry for entry in fields if not EXTENSIONS & set(entry)]


def test_every_kong_3_14_field_is_declared_with_kongs_type_default_and_rules() -> None:
    compared = walk(KONG, kongs_own(SCHEMA))
    assert len(kongs_own(SCHEMA)) == 45
    assert "token_exchange.request.actor_token_source" in compared
    assert "upstream_headers[].path" in compared


def descriptions(fields: list[dict[str, Any]], path: str = "") -> list[tuple[str, Any]]:
    out = []
    for entry in fields:
        ((name, definition),) = entry.items()
        out.append((path + name, definition.get("description")))
        if definition["type"] == "record":
            out += descriptions(definition["fields"], path + name + ".")
        if definition["type"] == "array" and definition["elements"]["type"] == "record":
            out += descriptions(definition["elements"]["fields"], path + name + "[].")
    return out


@pytest.mark.parametrize("path,description", descriptions(SCHEMA))
def test_each_field_has_a_description_kongs_metaschema_accepts(path: str, description: Any) -> None:
    # Kong 3.x metaschema: description = { type = "string", len_min = 10, len_max = 500 }
    assert isinstance(description, str), path
    assert 10 <= len(description) <= 500, path


def test_descriptions_carry_no_markdown_links_to_kongs_site() -> None:
    for path, description in descriptions(SCHEMA):
        assert not re.search(r"\]\(/", description), path


def run_dump(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kong_plugins.ai_mcp_oauth2.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("flag", ["--dump", "-dump"])
def test_dump_prints_kongs_plugin_info_json_and_nothing_else(flag: str) -> None:
    result = run_dump(flag)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)  # raises if anything else was printed
    assert isinstance(info, list) and len(info) == 1
    plugin = info[0]
    assert plugin["Name"] == NAME == "ai-mcp-oauth2"
    assert plugin["Priority"] == PRIORITY == 1015
    assert re.fullmatch(r"\d+\.\d+\.\d+", plugin["Version"]) and plugin["Version"] == __version__
    assert plugin["Phases"] == ["access"]
    assert plugin["Schema"]["name"] == NAME
    assert plugin["Schema"]["fields"] == [{"config": {"type": "record", "fields": SCHEMA}}]
    assert "Protocol" not in plugin  # Kong then uses MsgPack:1


def declared_fields(record_type: type, path: str = "") -> list[tuple[str, Any]]:
    """Every field of the typed records, with its declaration (records and record elements walked)."""
    out = []
    for field in dataclasses.fields(record_type):
        declared = spec(field)
        out.append((path + field.name, declared))
        if declared.record is not None:
            inner = "." if declared.kong["type"] == "record" else "[]."
            out += declared_fields(declared.record, path + field.name + inner)
    return out


def test_the_typed_config_and_the_schema_kong_receives_have_the_same_fields() -> None:
    """One declaration: every field of the typed records is in SCHEMA, and every SCHEMA field is typed."""
    typed = [path for path, _ in declared_fields(Config)]
    in_schema = [path for path, _ in descriptions(SCHEMA)]
    assert typed == in_schema
    assert len(typed) == 108


def test_a_config_of_nulls_reads_as_every_declared_default() -> None:
    """The walker takes its defaults from the declarations only: Kong's nulls read as the schema's defaults."""
    nulls = {name: None for name, _ in declared_fields(Config) if "." not in name and "[" not in name}
    config = parse_config(
        {**nulls, "resource": "https://mcp.example.com/mcp", "authorization_servers": ["https://as.example.com"]}
    )
    checked = 0
    for path, declared in declared_fields(Config):
        if "[]" in path or "default" not in declared.kong:
            continue
        value: Any = config
        for part in path.split("."):
            value = getattr(value, part)
        default = declared.kong["default"]
        assert value == (tuple(default) if isinstance(default, list) else default), path
        checked += 1
    assert checked == 43


@pytest.mark.parametrize("path,declared", declared_fields(Config))
def test_each_field_reads_its_declared_kong_type_into_its_python_type(path: str, declared: Any) -> None:
    python_type = {"string": "str", "boolean": "bool", "integer": "int", "number": "float"}
    record_type: Any = Config
    *parents, name = path.replace("[]", "").split(".")
    for parent in parents:
        record_type = spec(next(f for f in dataclasses.fields(record_type) if f.name == parent)).record
    annotation = next(f for f in dataclasses.fields(record_type) if f.name == name).type
    kind = declared.kong["type"]
    if kind in python_type:
        optional = "default" not in declared.kong and not (
            declared.kong.get("required") and record_type is not TokenExchange
        )
        assert annotation == python_type[kind] + (" | None" if optional else ""), path
    elif kind in ("array", "map"):
        assert annotation.startswith("tuple["), path
    else:
        assert annotation == declared.record.__name__, path


def test_extensions_are_marked_optional_and_default_to_kongs_behaviour() -> None:
    """Every field beyond Kong's schema says so, is never required, and its default changes nothing:
    null (no rule) or, for scopes_claim and mcp_trust_routing_headers, values no rule reads unless set;
    the cluster cache and DPoP are off, and their other fields are read only when they are on."""
    marked = {path for path, declared in declared_fields(Config) if declared.extension}
    assert marked == EXTENSIONS
    defaults = {}
    for path, declared in declared_fields(Config):
        if path in EXTENSIONS:
            assert not declared.kong.get("required"), path
            defaults[path] = declared.kong.get("default")
    assert defaults == {
        "scopes_claim": ["scope"],
        "scopes_required": None,
        "mcp_operations": None,
        "scope_hierarchy": None,
        "mcp_trust_routing_headers": False,
        "cluster_cache_strategy": "off",
        "cluster_cache_redis": None,
        "cluster_cache_items": ["introspection", "token_exchange"],
        "proof_of_possession_dpop": "off",
        "dpop_use_nonce": False,
        "dpop_proof_lifetime": 300,
    }
