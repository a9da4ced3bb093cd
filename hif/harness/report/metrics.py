"""The report's server counters: this run's deltas from metrics.jsonl, and what can only be read now.

The load runner scraped both endpoints through the run (:mod:`hif.harness.prometheus`, the one
parser every part of the harness uses); the report takes each counter's ``increase()`` over the run
and over each chaos window, so earlier runs against the same server never count. Gauges and the
counters' lifetime totals, read when the report is made, are labelled "now". An unreachable or
unparseable endpoint becomes ``{"ok": false, "error": ...}`` and the report goes on without it.
Metric names are the runbook's (see hif/metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hif.harness.prometheus import Fetch, Sample, counter_increase, fetch_text, parse
from hif.harness.prometheus import gauge as _gauge
from hif.harness.prometheus import sum_by as _sum_by_labels

__all__ = ["Fetch", "fetch_text", "parse_explainer", "parse_gateway", "run_deltas", "snapshot"]
# backpressure_actions_total{level} may carry the name or the gauge's number
LEVEL_NAMES = {"0": "none", "1": "soft", "2": "hard", "none": "none", "soft": "soft", "hard": "hard"}


def _sum_by(samples: list[Sample], name: str, label: str) -> dict[str, float]:
    return _sum_by_labels(samples, name, label)


def parse_explainer(text: str) -> dict[str, Any]:
    """Backpressure actions by (action, level), soft/hard level counts, the level gauge, job states."""
    samples = parse(text)
    actions = [
        {
            "action": s.labels.get("action", ""),
            "level": LEVEL_NAMES.get(s.labels.get("level", ""), s.labels.get("level", "")),
            "count": s.value,
        }
        for s in samples
        if s.name == "backpressure_actions_total"
    ]
    level_counts = {"soft": 0.0, "hard": 0.0}
    for s in samples:
        level = LEVEL_NAMES.get(s.labels.get("level", ""))
        if s.name == "backpressure_actions_total" and level in level_counts:
            level_counts[level] += s.value
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
    samples = parse(text)
    return {
        "admissions": _sum_by(samples, "gateway_explanation_admissions_total", "outcome"),
        "backpressure_level": _gauge(samples, "gateway_backpressure_level"),
        "requests_by_status": _sum_by(samples, "gateway_requests_total", "status"),
    }


def snapshot(
    url: str | None, parse_text: Callable[[str], dict[str, Any]], fetch: Fetch = fetch_text
) -> dict[str, Any]:
    """One endpoint's figures, or why there are none; never raises for a bad endpoint."""
    if not url:
        return {"url": None, "ok": False, "error": "not requested"}
    try:
        return {"url": url, "ok": True, "error": None, **parse_text(fetch(url))}
    except (OSError, ValueError) as exc:  # URLError is an OSError
        return {"url": url, "ok": False, "error": f"{type(exc).__name__}: {exc}"}


# (component, counter, labels it is split by, report key)
RUN_COUNTERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("explainer", "backpressure_actions_total", ("level", "action"), "backpressure_actions"),
    ("explainer", "explainer_jobs_total", ("state",), "jobs"),
    ("gateway", "gateway_explanation_admissions_total", ("outcome",), "admissions"),
    ("gateway", "gateway_requests_total", ("status",), "requests_by_status"),
)


def _by_level(actions: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, n in actions.items():
        level = key.split("/", 1)[0]
        name = LEVEL_NAMES.get(level, level)
        out[name] = out.get(name, 0.0) + n
    return out


def run_deltas(
    lines: Sequence[Mapping[str, Any]], *, start: float | None = None, end: float | None = None
) -> dict[str, Any]:
    """Each counter's increase over the scrapes that cover ``[start, end]`` (the whole log when None):
    ``{"ok", "why", "from", "to", "scrapes", key: {label: n}, "backpressure_by_level": {...}}``.

    ``ok`` is False (and ``why`` says why) when fewer than two scrapes of a component cover it."""
    out: dict[str, Any] = {"ok": True, "why": None, "from": None, "to": None, "scrapes": {}}
    missing = []
    for component, name, labels, key in RUN_COUNTERS:
        got = counter_increase(lines, component, name, labels, start=start, end=end)
        out["scrapes"][component] = got["scrapes"]
        if got["values"] is None:
            out[key] = None
            missing.append(component)
            continue
        out[key] = {k: round(v, 6) for k, v in got["values"].items()}
        out["from"] = got["from"] if out["from"] is None else min(out["from"], got["from"])
        out["to"] = got["to"] if out["to"] is None else max(out["to"], got["to"])
    if out["backpressure_actions"] is not None:
        out["backpressure_by_level"] = _by_level(out["backpressure_actions"])
    else:
        out["backpressure_by_level"] = None
    if missing:
        errors = sorted({str(x.get("error")) for x in lines if not x.get("ok") and x.get("error")})
        out["ok"] = False
        out["why"] = (
            f"fewer than two readable scrapes of {', '.join(sorted(set(missing)))} /metrics cover "
            "this interval" + (f" ({'; '.join(errors[:2])})" if errors else "")
        )
    return out


def now_urls(
    given_gateway: str | None, given_explainer: str | None, summaries: Sequence[Mapping[str, Any]]
) -> dict[str, str | None]:
    """Where to read the "now" figures: the flags, else the URLs the runner scraped (summary.json);
    ``off`` reads nothing."""
    scraped: dict[str, str] = {}
    for s in summaries:
        scraped.update(((s.get("metrics") or {}).get("urls")) or {})
    urls = {
        "gateway": given_gateway or scraped.get("gateway"),
        "explainer": given_explainer or scraped.get("explainer"),
    }
    return {k: (None if v == "off" else v) for k, v in urls.items()}


NO_LOG = "no metrics.jsonl in the results: the run did not scrape /metrics (old runner, or scraping off)"


def section(
    lines: Sequence[Mapping[str, Any]], urls: Mapping[str, str | None], fetch: Fetch
) -> dict[str, Any]:
    """report.json's ``metrics``: ``run`` (this run's deltas) and, under ``gateway``/``explainer``,
    what the endpoints say now (``now: true``)."""
    run = run_deltas(lines) if lines else {"ok": False, "why": NO_LOG}
    return {
        "run": run,
        "gateway": {**snapshot(urls.get("gateway"), parse_gateway, fetch), "now": True},
        "explainer": {**snapshot(urls.get("explainer"), parse_explainer, fetch), "now": True},
    }


def window_deltas(lines: Sequence[Mapping[str, Any]], start: float, end: float) -> dict[str, Any]:
    return run_deltas(lines, start=start, end=end) if lines else {"ok": False, "why": NO_LOG}
