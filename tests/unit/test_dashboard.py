"""docs/grafana/ai-mcp-oauth2.json: a Grafana dashboard whose queries use only the metric families
and labels that metrics.py defines (behaviour §11.5)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kong_plugins.ai_mcp_oauth2 import metrics

ROOT = Path(__file__).resolve().parent.parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "ai-mcp-oauth2.json"
METRIC = re.compile(r"\b(" + metrics.PREFIX + r"[a-z_]+)")
SELECTOR = re.compile(r"\b(" + metrics.PREFIX + r"[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# the values the plugin gives each label (metrics.py's constants; behaviour §11.5 for the rest)
VALUES = {
    "decision": {"accepted", "metadata", "refused"},
    "kind": set(metrics.KINDS),
    "outcome": set(metrics.OUTCOMES) | set(metrics.LOOKUP_OUTCOMES),
    "cache": set(metrics.CACHES),
    "layer": set(metrics.LAYERS),
    "operation": set(metrics.REDIS_OPERATIONS),
}


def exposed() -> dict[str, set[str]]:
    """Every series name the plugin server exposes, with its label names, from a registry that has
    recorded once through each hook (so that every family has samples)."""
    sink = metrics.PrometheusMetrics()
    sink.request("accepted", 200, "accepted")
    sink.call("introspection", "ok", 0.01)
    sink.lookup("tokens", "local", "hit")
    sink.redis_error("get")
    names: dict[str, set[str]] = {}
    for family in sink.registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def targets() -> list[dict[str, Any]]:
    return [target for panel in dashboard()["panels"] for target in panel.get("targets", ())]


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"]
    assert [(i["name"], i["type"], i["pluginId"]) for i in board["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_every_query_uses_only_the_plugins_families_and_labels() -> None:
    series = exposed()
    used: set[str] = set()
    for target in targets():
        expr = target["expr"]
        names = METRIC.findall(expr)
        assert names, expr
        for name in names:
            assert name in series, f"{name} is not a series metrics.py exposes"
        used.update(names)
        # a selector's matchers: labels of that series, values the plugin gives them
        for name, body in SELECTOR.findall(expr):
            for matcher in filter(None, body.split(",")):
                found = MATCHER.fullmatch(matcher)
                assert found, matcher
                label, op, value = found.groups()
                assert label in series[name], f"{name} has no label {label}"
                if op == "=" and label in VALUES:
                    assert value in VALUES[label], f"{label}={value!r} is never recorded"
                if label == "status":
                    assert re.fullmatch(r"[1-5]\d\d", value), value
        # grouping labels: on every series the expression aggregates
        for group in GROUPING.findall(expr):
            for label in (part.strip() for part in group.split(",")):
                for name in names:
                    assert label in series[name], f"by ({label}) over {name}, which has no such label"
        # the legend only names labels the query keeps
        kept = {part.strip() for group in GROUPING.findall(expr) for part in group.split(",")}
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            assert label in kept, f"legend {{{{{label}}}}} of {expr}"
    families = {name.removesuffix("_bucket") for name in used}
    assert families == {
        metrics.PREFIX + "requests_total",
        metrics.PREFIX + "authorization_server_calls_total",
        metrics.PREFIX + "authorization_server_call_duration_seconds",
        metrics.PREFIX + "cache_lookups_total",
        metrics.PREFIX + "redis_errors_total",
    }


def test_the_panels_the_operators_need() -> None:
    exprs = [target["expr"] for target in targets()]

    def uses(*parts: str) -> bool:
        return any(all(part in expr for part in parts) for expr in exprs)

    assert uses("requests_total", "by (decision, reason)")
    for status in ("401", "403", "503"):
        assert uses("requests_total", f'status="{status}"', "by (reason)"), status
    assert uses("authorization_server_calls_total", "by (kind, outcome)")
    for quantile in ("0.5", "0.99"):
        assert uses(f"histogram_quantile({quantile},", "_duration_seconds_bucket", "by (kind, le)"), quantile
    assert uses('cache_lookups_total{layer="local", outcome="hit"}', "/", "by (cache)")
    assert uses('cache_lookups_total{layer="redis"}', "by (cache, outcome)")
    assert uses("redis_errors_total", "by (operation)")
