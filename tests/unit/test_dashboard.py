"""The Grafana dashboard and the Prometheus rules are valid and only name metrics that exist.

Screenshot-free import check: the dashboard JSON model has a schemaVersion Grafana imports, unique
panel ids, a datasource template variable that every target uses, and a PromQL expression in every
target. Every metric an expression names must be one that ``hif/metrics.py`` exposes (checked on a
fresh registry), so a renamed metric breaks this test instead of a panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from hif.metrics import ExplainerMetrics, GatewayMetrics, WorkerProcessCollector, register_process_metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "grafana" / "sidecar-overview.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
MIN_SCHEMA_VERSION = 36  # Grafana 9+; the file targets the current model (39)
ROWS = (
    "Backpressure",
    "Explainer stages",
    "Queue lag",
    "Job outcomes",
    "Chaos",
    "Gateway chat lane",
    "Process health",
)

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or labels."""
    text = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub('""', expr))))
    names = set()
    for m in _IDENT.finditer(text):
        following = text[m.end() :].lstrip()
        if following.startswith("(") or m.group().lower() in _KEYWORDS:
            continue
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # exponent or unit suffix of a number literal
        names.add(m.group())
    return names


def exposed_names() -> set[str]:
    """Every sample name hif/metrics.py can expose, including labelled families with no children yet."""
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    ExplainerMetrics(registry)
    register_process_metrics(registry)  # serve_metrics adds them to every /metrics
    WorkerProcessCollector(list, registry)  # the explainer supervisor registers it
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels plus those nested in collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels(dashboard) for t in p.get("targets", [])]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_metric_names_parser_ignores_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(foo_bucket{stage="x", le=~"1e3"}[5m])))'
        " / on (job) group_left bar_total or vector(0) > 1e-3"
    )
    assert metric_names(expr) == {"foo_bucket", "bar_total"}


def test_schema_version_and_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= MIN_SCHEMA_VERSION
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["id"] is None  # import assigns the id; a fixed one collides across instances


def test_panel_ids_are_unique_and_layout_fits_the_grid(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels(dashboard):
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, p["title"]


def test_rows_cover_the_runbook_mapping(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == list(ROWS)


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("tenant", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


def test_every_target_has_datasource_and_expression(dashboard: dict[str, Any]) -> None:
    all_targets = targets(dashboard)
    assert len(all_targets) >= 15
    ref_ids: dict[str, set[str]] = {}
    for title, target in all_targets:
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert target["expr"].strip(), title
        assert target["refId"] not in ref_ids.setdefault(title, set()), f"duplicate refId in {title}"
        ref_ids[title].add(target["refId"])
    for p in panels(dashboard):
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p.get("targets"), p["title"]


def test_dashboard_names_only_exposed_metrics(dashboard: dict[str, Any]) -> None:
    known = exposed_names()
    used = set()
    for title, target in targets(dashboard):
        names = metric_names(target["expr"])
        assert names, f"{title}: no metric in {target['expr']!r}"
        unknown = names - known
        assert not unknown, f"{title}: {sorted(unknown)} not in hif/metrics.py"
        used |= names
    runbook = {
        "backpressure_level",
        "backpressure_actions_total",
        "explainer_stage_duration_seconds_bucket",
        "explainer_queue_lag_seconds",
        "explainer_jobs_total",
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_explanation_admissions_total",
        "chaos_fault_active",
        "chaos_injections_total",
    }
    assert runbook <= used


def test_rules_name_only_exposed_metrics() -> None:
    rules = yaml.safe_load(RULES.read_text())
    known = exposed_names() | {"up"}
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    for group in rules["groups"]:
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - known - recorded
            assert not unknown, f"{rule.get('record') or rule.get('alert')}: {sorted(unknown)}"


def test_every_slo_has_a_fast_and_a_slow_burn_alert() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    by_slo: dict[str, set[str]] = {}
    for alert in alerts:
        by_slo.setdefault(alert["labels"]["slo"], set()).add(alert["labels"]["severity"])
    slos = {s for s in by_slo if s != "availability"}
    assert len(slos) == 5
    for slo in slos:
        assert by_slo[slo] == {"page", "ticket"}, slo
