"""Prometheus snapshots for the report: backpressure actions and levels, admissions, job outcomes.

The text is parsed with ``prometheus_client.parser.text_string_to_metric_families``; an unreachable
or unparseable endpoint becomes ``{"ok": false, "error": ...}`` and the report goes on without it.
Metric names are the runbook's (see hif/metrics.py).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Fetch = Callable[[str], str]
# backpressure_actions_total{level} may carry the name or the gauge's number
LEVEL_NAMES = {"0": "none", "1": "soft", "2": "hard", "none": "none", "soft": "soft", "hard": "hard"}


def fetch_text(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return bytes(resp.read()).decode("utf-8", "replace")


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), float(s.value))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def _sum_by(samples: list[tuple[str, dict[str, str], float]], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for sname, labels, value in samples:
        if sname == name:
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


def _gauge(samples: list[tuple[str, dict[str, str], float]], name: str) -> float | None:
    values = [v for n, _, v in samples if n == name]
    return max(values) if values else None


def parse_explainer(text: str) -> dict[str, Any]:
    """Backpressure actions by (action, level), soft/hard level counts, the level gauge, job states."""
    samples = _samples(text)
    actions = [
        {
            "action": labels.get("action", ""),
            "level": LEVEL_NAMES.get(labels.get("level", ""), labels.get("level", "")),
            "count": value,
        }
        for name, labels, value in samples
        if name == "backpressure_actions_total"
    ]
    level_counts = {"soft": 0.0, "hard": 0.0}
    for name, labels, value in samples:
        level = LEVEL_NAMES.get(labels.get("level", ""))
        if name == "backpressure_actions_total" and level in level_counts:
            level_counts[level] += value
    return {
        "backpressure_actions": sorted(actions, key=lambda a: (a["level"], a["action"])),
        "level_counts": level_counts,
        "backpressure_level": _gauge(samples, "backpressure_level"),
        "jobs": _sum_by(samples, "explainer_jobs_total", "state"),
        "queue_lag_s": _gauge(samples, "explainer_queue_lag_seconds"),
        "chaos_injections": _sum_by(samples, "chaos_injections_total", "flag"),
    }


def parse_gateway(text: str) -> dict[str, Any]:
    """Explanation admissions by outcome, the level the gateway sees, requests by status."""
    samples = _samples(text)
    return {
        "admissions": _sum_by(samples, "gateway_explanation_admissions_total", "outcome"),
        "backpressure_level": _gauge(samples, "gateway_backpressure_level"),
        "requests_by_status": _sum_by(samples, "gateway_requests_total", "status"),
    }


def snapshot(
    url: str | None, parse: Callable[[str], dict[str, Any]], fetch: Fetch = fetch_text
) -> dict[str, Any]:
    """One endpoint's figures, or why there are none; never raises for a bad endpoint."""
    if not url:
        return {"url": None, "ok": False, "error": "not requested"}
    try:
        return {"url": url, "ok": True, "error": None, **parse(fetch(url))}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"url": url, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
