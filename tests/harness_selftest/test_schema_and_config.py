"""Pure-logic self-tests: Kong's metaschema, config normalisation, env settings, declarative parsing."""

import json
from typing import Any

import pytest

from tests.harness.kong_standin import ConfigError
from tests.harness.kong_standin.declarative import build_config_json, parse_declarative
from tests.harness.kong_standin.metaschema import validate_plugin_schema
from tests.harness.kong_standin.normalize import normalize_record
from tests.harness.kong_standin.settings import read_settings


def schema(*fields, name="p"):
    return {"name": name, "fields": [{"config": {"type": "record", "fields": list(fields)}}]}


# ---------------------------------------------------------------- metaschema
@pytest.mark.parametrize(
    "field",
    [
        {"a": {"type": "string", "default": "x", "one_of": ["x", "y"]}},
        {"a": {"type": "array", "elements": {"type": "string", "match": "^https?://"}, "default": []}},
        {"a": {"type": "map", "keys": {"type": "string"}, "values": {"type": "integer", "between": [0, 5]}}},
        {"a": {"type": "record", "fields": [{"b": {"type": "integer", "default": 1, "between": [0, 5]}}]}},
        {"a": {"type": "string", "description": "a long enough description"}},
        {"a": {"type": "number", "gt": 0, "default": 1.5}},
    ],
)
def test_metaschema_accepts_valid_kong_field_definitions(field):
    validate_plugin_schema(schema(field), "p")


@pytest.mark.parametrize(
    "field,needle",
    [
        ({"a": {"required": True}}, "type: required field missing"),
        ({"a": {"type": "str"}}, "expected one of"),
        ({"a": {"type": "function"}}, "cannot be expressed"),
        ({"a": {"type": "array"}}, "must declare 'elements'"),
        ({"a": {"type": "map", "keys": {"type": "string"}}}, "must declare 'values'"),
        ({"a": {"type": "record"}}, "must declare 'fields'"),
        ({"a": {"type": "json"}}, "must declare 'json_schema'"),
        ({"a": {"type": "string", "bogus": 1}}, "a.bogus: unknown field"),
        ({"a": {"type": "string", "description": "short"}}, "length must be at least 10"),
        ({"a": {"type": "string", "between": [1, 2]}}, "'between' is not allowed"),
        ({"a": {"type": "boolean", "one_of": [True]}}, "'one_of' is not allowed"),
        ({"a": {"type": "integer", "match": "x"}}, "'match' is not allowed"),
        ({"a": {"type": "string", "default": "z", "one_of": ["x", "y"]}}, "expected one of: x, y"),
        ({"a": {"type": "integer", "default": "1"}}, "expected an integer"),
        (
            {"a": {"type": "array", "elements": {"type": "string"}, "len_min": 1, "default": []}},
            "length must be at least 1",
        ),
        (
            {"a": {"type": "record", "fields": [{"b": {"type": "integer", "oops": 1}}]}},
            "config.a.b.oops: unknown field",
        ),
        ({"a": {"type": "string"}, "b": {"type": "string"}}, "single key"),
    ],
)
def test_metaschema_rejects_what_kong_metasubschema_rejects(field, needle):
    with pytest.raises(ConfigError) as ei:
        validate_plugin_schema(schema(field), "p")
    assert needle in str(ei.value)


# ---------------------------------------------------------------- normalisation
FIELDS: list[Any] = [
    {"header_name": {"type": "string", "required": True, "default": "authorization"}},
    {"allowed": {"type": "array", "elements": {"type": "string"}, "default": []}},
    {"nested": {"type": "record", "fields": [{"level": {"type": "integer", "default": 1, "between": [0, 5]}}]}},
    {"mode": {"type": "string", "one_of": ["strict", "lax"], "default": "strict"}},
    {"message": {"type": "string"}},
    {"scopes": {"type": "array", "elements": {"type": "string"}, "len_min": 1}},
    {"ratio": {"type": "number"}},
    {"flag": {"type": "boolean"}},
    {"tags": {"type": "map", "keys": {"type": "string"}, "values": {"type": "string"}}},
]


def norm(value):
    errors: list[tuple[str, str]] = []
    out = normalize_record(FIELDS, value, "config", errors)
    return out, dict(errors)


def test_normalisation_fills_defaults_and_nulls_missing_fields_like_kong():
    out, errors = norm({})
    assert errors == {}
    assert out == {
        "header_name": "authorization",
        "allowed": [],
        "nested": None,
        "mode": "strict",
        "message": None,
        "scopes": None,
        "ratio": None,
        "flag": None,
        "tags": None,
    }


def test_missing_non_required_record_stays_null_but_present_record_gets_defaults():
    assert norm({})[0]["nested"] is None
    assert norm({"nested": {}})[0]["nested"] == {"level": 1}


def test_required_record_missing_is_processed_from_empty_table():
    errors: list[tuple[str, str]] = []
    out = normalize_record(
        [{"r": {"type": "record", "required": True, "fields": [{"x": {"type": "integer", "default": 7}}]}}],
        {},
        "config",
        errors,
    )
    assert out == {"r": {"x": 7}} and errors == []


@pytest.mark.parametrize(
    "value,path,msg",
    [
        ({"bogus": 1}, "config.bogus", "unknown field"),
        ({"mode": "other"}, "config.mode", "expected one of: strict, lax"),
        ({"scopes": []}, "config.scopes", "length must be at least 1"),
        ({"message": 5}, "config.message", "expected a string"),
        ({"message": ""}, "config.message", "length must be at least 1"),
        ({"nested": {"level": 3.5}}, "config.nested.level", "expected an integer"),
        ({"nested": {"level": 9}}, "config.nested.level", "value should be between 0 and 5"),
        ({"nested": 3}, "config.nested", "expected a record"),
        ({"ratio": True}, "config.ratio", "expected a number"),
        ({"flag": "yes"}, "config.flag", "expected a boolean"),
        ({"allowed": "a"}, "config.allowed", "expected an array"),
        ({"allowed": [1]}, "config.allowed[1]", "expected a string"),
        ({"tags": ["a"]}, "config.tags", "expected a map"),
    ],
)
def test_normalisation_errors_use_kong_messages(value, path, msg):
    assert norm(value)[1] == {path: msg}


def test_integer_accepts_integral_float_and_required_missing_is_reported():
    out, errors = norm({"nested": {"level": 3.0}})
    assert out["nested"]["level"] == 3 and isinstance(out["nested"]["level"], int)
    errors = []
    normalize_record([{"iss": {"type": "string", "required": True}}], {}, "config", errors)
    assert errors == [("config.iss", "required field missing")]


# ---------------------------------------------------------------- env settings
def test_env_settings_default_socket_is_prefix_name_socket_and_n_is_lowercased_with_underscores(tmp_path):
    s = read_settings(
        {
            "KONG_PREFIX": str(tmp_path),
            "KONG_PLUGINSERVER_NAMES": "My-Plugin",
            "KONG_PLUGINSERVER_MY_PLUGIN_QUERY_CMD": "q",
        },
        file_exists=lambda p: False,
    )
    assert s.servers[0].socket == f"{tmp_path}/my-plugin.socket"
    assert s.servers[0].start_cmd is None and s.warnings


def test_env_settings_defaults_use_usr_local_bin_when_present():
    s = read_settings({"KONG_PLUGINSERVER_NAMES": "x"}, file_exists=lambda p: p == "/usr/local/bin/x")
    assert (s.servers[0].start_cmd, s.servers[0].query_cmd) == ("/usr/local/bin/x", "/usr/local/bin/x -dump")
    assert s.servers[0].socket == "/usr/local/kong/x.socket"


def test_missing_query_cmd_is_fatal_on_kong_39():
    with pytest.raises(ConfigError, match="query_command undefined for pluginserver x"):
        read_settings({"KONG_PLUGINSERVER_NAMES": "x"}, file_exists=lambda p: False)


# ---------------------------------------------------------------- declarative
SCHEMAS = {"p": {"type": "record", "fields": [{"a": {"type": "string", "default": "d"}}]}}


def test_declarative_unknown_top_level_key_and_bad_format_version_are_rejected():
    with pytest.raises(ConfigError, match="upstreams: unknown field"):
        parse_declarative({"_format_version": "3.0", "upstreams": []}, SCHEMAS, {"p"})
    with pytest.raises(ConfigError, match="_format_version"):
        parse_declarative({"_format_version": "4.0"}, SCHEMAS, {"p"})


def test_config_json_carries_kong_injected_keys_and_route_scope():
    d = parse_declarative(
        {
            "_format_version": "3.0",
            "services": [
                {
                    "name": "s",
                    "url": "http://h:1/x",
                    "routes": [{"name": "r", "paths": ["/a"], "plugins": [{"name": "p", "instance_name": "i1"}]}],
                }
            ],
        },
        SCHEMAS,
        {"p"},
    )
    p = d.plugins[0]
    conf = json.loads(build_config_json(p, 7))
    assert conf["a"] == "d" and conf["route_id"] == d.routes[0].id and "service_id" not in conf
    assert conf["plugin_instance_name"] == "i1" and conf["__plugin_id"] == p.id and conf["__seq__"] == 7
    assert conf["__ws_id"] and conf["__key__"].startswith("plugins:p:")
    assert "consumer_id" not in conf


def test_plugin_config_violation_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"config\.zzz: unknown field"):
        parse_declarative({"_format_version": "3.0", "plugins": [{"name": "p", "config": {"zzz": 1}}]}, SCHEMAS, {"p"})
    with pytest.raises(ConfigError, match="not enabled"):
        parse_declarative({"_format_version": "3.0", "plugins": [{"name": "q"}]}, SCHEMAS, {"p"})
