"""Prometheus snapshots in the report: parsed from exposition text, unreachable endpoints noted."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hif.harness import prometheus
from hif.harness.records import CHAT_FILE
from hif.harness.report import run as report
from hif.harness.report.metrics import parse_explainer, parse_gateway, run_deltas, snapshot
from hif.metrics import ExplainerMetrics, GatewayMetrics
from tests.conftest import free_port


def _explainer_text() -> str:
    """Real exposition text from the project's own metric definitions."""
    m = ExplainerMetrics(CollectorRegistry())
    m.backpressure_actions.labels(action="reduce-topk", level="soft").inc(3)
    m.backpressure_actions.labels(action="reduce-layers", level="soft").inc(2)
    m.backpressure_actions.labels(action="shed", level="hard").inc(4)
    m.backpressure_actions.labels(action="sentence-only", level="2").inc(1)  # numeric level label
    m.backpressure_level.set(2)
    m.jobs.labels(state="complete").inc(10)
    m.jobs.labels(state="failed").inc(1)
    m.chaos_injections.labels(flag="slow-sae").inc(5)
    return generate_latest(m.registry).decode()


def _gateway_text() -> str:
    m = GatewayMetrics(CollectorRegistry())
    m.admissions.labels(outcome="admitted", granularity="sentence", tenant="a").inc(7)
    m.admissions.labels(outcome="admitted", granularity="token", tenant="b").inc(3)
    m.admissions.labels(outcome="shed", granularity="token", tenant="a").inc(2)
    m.backpressure_level.set(1)
    return generate_latest(m.registry).decode()


def test_explainer_backpressure_counters_and_levels() -> None:
    got = parse_explainer(_explainer_text())
    assert got["level_counts"] == {"soft": 5.0, "hard": 5.0}
    assert got["backpressure_level"] == 2.0
    assert {(a["action"], a["level"], a["count"]) for a in got["backpressure_actions"]} == {
        ("reduce-topk", "soft", 3.0),
        ("reduce-layers", "soft", 2.0),
        ("shed", "hard", 4.0),
        ("sentence-only", "hard", 1.0),
    }
    assert got["jobs"] == {"complete": 10.0, "failed": 1.0}
    assert got["chaos_injections"] == {"slow-sae": 5.0}


def test_gateway_admissions_sum_over_labels() -> None:
    got = parse_gateway(_gateway_text())
    assert got["admissions"] == {"admitted": 10.0, "shed": 2.0}
    assert got["backpressure_level"] == 1.0


def test_unreachable_and_garbage_endpoints_are_noted() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    down = snapshot(url, parse_explainer)
    assert down["ok"] is False and down["url"] == url and "URLError" in down["error"]

    def garbage(_url: str) -> str:
        return "this is { not prometheus\n"

    bad = snapshot("http://x/metrics", parse_explainer, garbage)
    assert bad["ok"] is False and bad["error"]
    assert snapshot(None, parse_gateway) == {"url": None, "ok": False, "error": "not requested"}


def test_report_completes_with_metrics_from_a_fake_fetch_and_a_dead_url(tmp_path: Path) -> None:
    (tmp_path / CHAT_FILE).write_text(json.dumps({"ts": 1.0, "status": 200, "latency_ms": 1.0}) + "\n")
    texts = {"http://gw/metrics": _gateway_text(), "http://ex/metrics": _explainer_text()}

    def fetch(url: str) -> str:
        if url not in texts:
            raise urllib.error.URLError("connection refused")
        return texts[url]

    settings = report.ReportSettings(
        results_dirs=(tmp_path,),
        metrics_url_gateway="http://gw/metrics",
        metrics_url_explainer="http://ex/metrics",
        chaos_path=tmp_path / "c.json",
    )
    data = report.run_report(settings, fetch)
    assert data["metrics"]["explainer"]["level_counts"] == {"soft": 5.0, "hard": 5.0}
    assert data["metrics"]["gateway"]["admissions"]["shed"] == 2.0
    md = (tmp_path / "report.md").read_text()
    assert "| shed | hard | 4 |" in md and "actions at soft 5, at hard 5" in md

    dead = report.ReportSettings(
        results_dirs=(tmp_path,),
        metrics_url_explainer="http://nowhere/metrics",
        chaos_path=tmp_path / "c.json",
        charts=False,
    )
    data = report.run_report(dead, fetch)
    assert data["metrics"]["explainer"]["ok"] is False
    assert "Explainer metrics now: not read (URLError" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("level", ["soft", "1"])
def test_level_names_accept_numbers(level: str) -> None:
    text = f'backpressure_actions_total{{action="a",level="{level}"}} 2.0\n'
    assert parse_explainer(text)["level_counts"]["soft"] == 2.0


def _scrape_line(ts: float, component: str, text: str) -> dict[str, Any]:
    return prometheus.scrape(component, f"http://{component}/metrics", lambda _u: text, now=ts)


def test_increase_survives_a_counter_reset() -> None:
    assert prometheus.increase([5.0, 9.0, 9.0, 12.0]) == 7.0
    assert prometheus.increase([100.0, 104.0, 3.0, 10.0]) == 4.0 + 3.0 + 7.0  # restarted after 104
    assert prometheus.increase([7.0]) == 0.0


def test_run_deltas_count_this_run_only_and_per_window() -> None:
    def ex(shed: float, complete: float) -> str:
        return (
            f'backpressure_actions_total{{action="shed",level="hard"}} {shed}\n'
            f'explainer_jobs_total{{state="complete"}} {complete}\n'
        )

    def gw(admitted: float) -> str:
        return (
            f'gateway_explanation_admissions_total{{outcome="admitted",granularity="sentence"}} {admitted}\n'
        )

    # 14851 sheds from an earlier run are on the counter before this run starts; the explainer
    # restarts between t=10 and t=15 (its counters back near zero).
    lines = [
        _scrape_line(0.0, "explainer", ex(14851, 6000)),
        _scrape_line(5.0, "explainer", ex(14851, 6010)),
        _scrape_line(10.0, "explainer", ex(14853, 6020)),
        _scrape_line(15.0, "explainer", ex(1, 4)),
        _scrape_line(20.0, "explainer", ex(1, 9)),
        *(_scrape_line(t, "gateway", gw(100 + 3 * t)) for t in (0.0, 5.0, 10.0, 15.0, 20.0)),
    ]
    run = run_deltas(lines)
    assert run["ok"] and run["backpressure_by_level"] == {"hard": 3.0}
    assert run["jobs"] == {"complete": 20.0 + 4.0 + 5.0}
    assert run["admissions"] == {"admitted": 60.0}
    window = run_deltas(lines, start=5.0, end=10.0)
    assert window["backpressure_by_level"] == {"hard": 2.0} and window["jobs"] == {"complete": 10.0}
    gone = run_deltas([x for x in lines if x["component"] == "gateway"])
    assert not gone["ok"] and "explainer" in gone["why"] and gone["admissions"] == {"admitted": 60.0}


def test_an_unreadable_scrape_is_logged_with_its_reason() -> None:
    def refuse(url: str) -> str:
        raise urllib.error.URLError("connection refused")

    line = prometheus.scrape("gateway", "http://gw/metrics", refuse, now=1.0)
    assert line["ok"] is False and "connection refused" in line["error"] and line["samples"] == []
