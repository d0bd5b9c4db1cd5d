"""Kong's config for one plugin instance, read into the typed records ``schema.py`` declares, then checked.

Kong validates each field against the declared schema before the config reaches the plugin
server, and the walker here reads it by the same declarations (type, ``required``, default,
``one_of``, ``len_min``, the field's format), so that a config that did not come through Kong is
held to the same rules. Kong leaves a record the user omitted as ``null``: it means its defaults
(and, as in Kong, the ``required`` fields inside it are not required then). Fields Kong injects
(``__plugin_id``, ``route_id``…) are not declared and not read.

A Python plugin cannot declare Kong's entity checks, so the rules that span fields (behaviour §1.3)
are the named checks in :data:`CHECKS`, made once per plugin instance. A problem raises
:class:`~.errors.ConfigError` naming the field it blames; secrets, keys and URLs are never quoted
(a header name, an algorithm or a ``client_auth`` method may be).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from . import client_auth, cluster_cache, dpop, scopes, token_exchange
from .errors import ConfigError
from .schema import Config, Spec, spec

R = TypeVar("R")


def parse_config(raw: Any) -> Config:
    """Turn the config Kong passes to ``Plugin(config)`` into a checked :class:`Config`, or raise ConfigError."""
    config = read_record(Config, raw, "", present=True)
    for check in CHECKS:
        check(config)
    return config


def read_record(record_type: type[R], raw: Any, prefix: str, present: bool) -> R:
    """One record, field by field as declared; ``present`` is False for a record Kong left ``null``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip(".") or "config", "expected a record")
    values = {
        field.name: read_field(spec(field), raw.get(field.name), prefix + field.name, present)
        for field in dataclasses.fields(record_type)  # type: ignore[arg-type]
    }
    return record_type(**values)


def read_field(declared: Spec, value: Any, name: str, present: bool) -> Any:
    """One field's value, of its declared type, its default filled in; its format checked."""
    kong = declared.kong
    kind = kong["type"]
    if value is None or (kind == "map" and value == []):  # Kong encodes an empty Lua table as an array
        if kong.get("required") and present:
            raise ConfigError(name, "required field missing")
        value = kong.get("default")
        if value is None:
            if kind == "record":
                assert declared.record is not None
                return read_record(declared.record, None, name + ".", present=False)
            return () if kind in ("array", "map") else None
    result = _READERS[kind](declared, value, name)
    if declared.check is not None:
        declared.check(name, result)
    return result


def _string(declared: Spec, value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(name, "expected a string")
    if declared.kong.get("required") and value == "":
        raise ConfigError(name, "must not be empty")
    _one_of(declared.kong, value, name)
    return value


def _boolean(_declared: Spec, value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, "expected a boolean")
    return value


def _integer(declared: Spec, value: Any, name: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, "expected an integer")
    if declared.minimum is not None and value < declared.minimum:
        raise ConfigError(name, f"must be at least {declared.minimum}")
    if declared.maximum is not None and value > declared.maximum:
        raise ConfigError(name, f"must be at most {declared.maximum}")
    return value


def _number(_declared: Spec, value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, "expected a number")
    return float(value)


def _array(declared: Spec, value: Any, name: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ConfigError(name, "expected an array")
    if len(value) < declared.kong.get("len_min", 0):
        raise ConfigError(name, f"must have at least {declared.kong['len_min']} element(s)")
    if declared.record is not None:
        return tuple(read_record(declared.record, item, f"{name}[{i}].", True) for i, item in enumerate(value, 1))
    elements = declared.kong["elements"]
    if not all(isinstance(item, str) for item in value):
        raise ConfigError(name, "expected an array of strings")
    if any(item == "" for item in value):
        raise ConfigError(name, "must not contain empty strings")
    for i, item in enumerate(value, 1):
        _one_of(elements, item, name)
        if declared.element_check is not None:
            declared.element_check(f"{name}[{i}]", item)
    return tuple(value)


def _map(_declared: Spec, value: Any, name: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(name, "expected a map of strings to strings")
    return tuple(value.items())


def _record(declared: Spec, value: Any, name: str) -> Any:
    assert declared.record is not None
    return read_record(declared.record, value, name + ".", present=True)


def _one_of(kong: dict[str, Any], value: str, name: str) -> None:
    allowed = kong.get("one_of")
    if allowed is not None and value not in allowed:
        raise ConfigError(name, "expected one of: " + ", ".join(allowed))


_READERS: dict[str, Callable[[Spec, Any, str], Any]] = {
    "string": _string,
    "boolean": _boolean,
    "integer": _integer,
    "number": _number,
    "array": _array,
    "map": _map,
    "record": _record,
}


# The checks Kong's schema cannot declare, each blaming one field (behaviour §1.3).


def claim_to_header_or_upstream_headers(config: Config) -> None:
    """Kong's entity check: the two ways of mapping claims to headers are mutually exclusive. As
    Kong's ``mutually_exclusive`` checker, an empty array counts as not set (its ``is_nonempty``)."""
    if config.claim_to_header and config.upstream_headers:
        raise ConfigError("claim_to_header", "claim_to_header and upstream_headers are mutually exclusive")


def each_header_mapped_once(config: Config) -> None:
    """A header set from two claims would be ambiguous (names compared case-insensitively, RFC 9110 §5.1)."""
    field_name = "claim_to_header" if config.claim_to_header else "upstream_headers"
    seen: set[str] = set()
    for header in [m.header for m in config.claim_to_header] + [m.header for m in config.upstream_headers]:
        if header.lower() in seen:
            raise ConfigError(field_name, f"header {header} is mapped more than once")
        seen.add(header.lower())


def exchange_needs_passthrough(config: Config) -> None:
    """Kong's entity check: the exchanged token replaces ``Authorization``, so it must be passed through."""
    if config.token_exchange.enabled and not config.passthrough_credentials:
        raise ConfigError("passthrough_credentials", "token_exchange.enabled requires passthrough_credentials: true")


def exchange_client_has_credentials(config: Config) -> None:
    """The token endpoint's client authentication has what it needs (``client_auth.py``)."""
    if config.token_exchange.enabled:
        client_auth.check_exchange_client(config)


def introspection_client_has_credentials(config: Config) -> None:
    """The introspection endpoint's client authentication has what it needs (``client_auth.py``)."""
    if config.introspection_endpoint is not None:
        client_auth.check_client(config)


def client_jwk_is_usable(config: Config) -> None:
    """``client_jwk`` parses as a private JWK of an algorithm ``client_alg`` allows, whenever it is set."""
    if config.client_jwk is not None:
        client_auth.signing_algorithm(config.client_jwk, config.client_alg)


def scope_rules_are_consistent(config: Config) -> None:
    """``scope_hierarchy`` has no cycle and no two ``mcp_operations`` entries claim the same operation
    (``scopes.py``)."""
    scopes.ScopeRules(config)


def consumer_groups_cannot_be_mapped(config: Config) -> None:
    """The Kong PDK has no consumer-group lookup: groups from a claim fail closed unless optional."""
    if config.consumer_groups_claim and not config.consumer_groups_optional:
        raise ConfigError(
            "consumer_groups_claim",
            "the Kong PDK offers no consumer-group lookup, so groups from a claim cannot be mapped; "
            "set consumer_groups_optional: true to accept requests without them",
        )


def redis_mode_is_whole(config: Config) -> None:
    """Kong's shared Redis record names one deployment: Sentinel needs its master and its nodes, and
    is not combined with Redis Cluster's nodes (behaviour §13.1)."""
    redis = config.cluster_cache_redis
    prefix = "cluster_cache_redis."
    if redis.sentinel_master and not redis.sentinel_nodes:
        raise ConfigError(prefix + "sentinel_nodes", "required when sentinel_master is set")
    if redis.sentinel_nodes and not redis.sentinel_master:
        raise ConfigError(prefix + "sentinel_master", "required when sentinel_nodes is set")
    if redis.cluster_nodes and redis.sentinel_master:
        raise ConfigError(prefix + "cluster_nodes", "Redis Cluster and Redis Sentinel are mutually exclusive")


CHECKS: tuple[Callable[[Config], None], ...] = (
    client_jwk_is_usable,
    exchange_needs_passthrough,
    token_exchange.actor_token_source_has_its_value,
    exchange_client_has_credentials,
    claim_to_header_or_upstream_headers,
    each_header_mapped_once,
    introspection_client_has_credentials,
    consumer_groups_cannot_be_mapped,
    scope_rules_are_consistent,
    redis_mode_is_whole,
    dpop.dpop_nonce_has_a_secret,
)


def warnings(config: Config) -> list[str]:
    """What the instance logs at start: settings it accepts but cannot honour, or advises against."""
    found: list[str] = []
    if config.consumer_groups_claim:
        found.append(
            "consumer_groups_claim: ignored, the Kong PDK offers no consumer-group lookup "
            "(a mapped consumer still gets its own groups from Kong)"
        )
    if config.consumer_claim and "custom_id" in config.consumer_by:
        found.append("consumer_by: the Kong PDK offers no lookup by custom_id; that choice is skipped")
    required = [*config.scopes_required, *(s for op in config.mcp_operations for s in op.scopes_required)]
    if any("offline_access" in entry.split(" ") for entry in required):
        found.append(
            "scopes_required/mcp_operations: offline_access is never named in a challenge; "
            "an alternative of only offline_access cannot be stepped up to"
        )
    if "offline_access" in config.scopes_supported:
        found.append(
            "scopes_supported: offline_access is not advertised (MCP authorization: servers SHOULD NOT), "
            "neither in the metadata document nor in challenges"
        )
    if config.cluster_cache_strategy == "redis" and not cluster_cache.shared_items(config):
        found.append(
            "cluster_cache_strategy: redis shares nothing with this configuration (it shares introspection "
            "results and exchanged tokens whose local cache is on, as cluster_cache_items lists)"
        )
    if config.cluster_cache_strategy == "redis" and config.cluster_cache_redis.server_name:
        found.append("cluster_cache_redis.server_name: ignored, TLS to Redis sends and verifies the host's name")
    return found
