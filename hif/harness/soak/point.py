"""One soak segment as a time-series point, built from the load runner's summary and /metrics health.

The load runner already measured the segment (HDR percentiles, rates, its own time buckets); this
module picks the soak's figures out of it, marks the SLOs each segment and bucket broke, and lays
all segments out as parallel series for charts and the drift fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hif.harness import gates
from hif.harness.soak.plan import SegmentPlan

# Series the drift/leak analysis fits (names match hif.harness.soak.drift.RULES).
SERIES = (
    "chat_p95_ms",
    "chat_error_rate",
    "sentence_p95_ms",
    "token_p95_ms",
    "expired_failed_rate",
    "gateway_rss_bytes",
    "explainer_rss_bytes",
    "explainer_workers_rss_bytes",
    "gateway_open_fds",
    "explainer_open_fds",
    "explainer_workers_open_fds",
    "queue_lag_s",
)


def _pct(summary: Mapping[str, Any], key: str = "p95_ms") -> float | None:
    """A percentile from a histogram summary; None when the histogram was empty (it reads 0)."""
    return summary.get(key) if summary.get("count") else None


def _positive(value: Any) -> float | None:
    """Bucket percentiles read 0.0 when empty; no real latency is exactly 0."""
    return float(value) if value else None


def breaches(values: Mapping[str, float | None], slos: Mapping[str, float]) -> list[str]:
    """Names of the SLOs whose value is known and on the wrong side of its threshold (each gate's
    direction from the registry, :mod:`hif.harness.gates`)."""
    return gates.breaches(values, slos)


def _bucket(b: Mapping[str, Any], slos: Mapping[str, float]) -> dict[str, Any]:
    traces = int(b.get("traces") or 0)
    requests = int(b.get("requests") or 0)
    out = {
        "start_ts": b.get("start_s"),
        "end_ts": b.get("end_s"),
        "requests": requests,
        "rps": b.get("rps"),
        "p50_ms": _positive(b.get("p50_ms")),
        "p95_ms": _positive(b.get("p95_ms")),
        # the counts too, so a reader can add buckets up (hif compare on a soak folder)
        **{k: b.get(k, 0) for k in ("errors", "expired", "failed", "shed")},
        "rate_4xx": b.get("http_4xx", 0) / requests if requests else None,
        "rate_5xx": b.get("http_5xx", 0) / requests if requests else None,
        "error_rate": b.get("error_rate") if requests else None,
        "sentence_p95_ms": _positive(b.get("sentence_p95_ms")),
        "token_p95_ms": _positive(b.get("token_p95_ms")),
        "traces": traces,
        "expired_failed_rate": (b.get("expired", 0) + b.get("failed", 0)) / traces if traces else None,
        # summary v4 buckets; an attached chat counts in the bucket its explanation ended in
        "goodput_rps": b.get("goodput_rps") if requests else None,
    }
    out["slo_breaches"] = breaches({**out, "chat_p95_ms": out["p95_ms"]}, slos)
    return out


def segment_point(
    plan: SegmentPlan, load: Mapping[str, Any], health: Mapping[str, Any], slos: Mapping[str, float]
) -> dict[str, Any]:
    """The soak's record of one finished segment."""
    chat, expl = load["chat"], load["explanations"]
    latency, sla = chat["latency_ms"], expl["sla_ms"]
    chat_out = {
        "requests": chat["requests"],
        "rps": chat["rps"],
        "p50_ms": _pct(latency, "p50_ms"),
        "p95_ms": _pct(latency),
        "p99_ms": _pct(latency, "p99_ms"),
        "intended_p95_ms": _pct(chat.get("intended_latency_ms", {})),
        "rate_4xx": chat["http_4xx_rate"],
        "rate_5xx": chat["http_5xx_rate"],
        "error_rate": chat["error_rate"],
        "goodput_rps": chat.get("goodput_rps"),  # summary v4
        "goodput_share": chat.get("goodput_share"),
    }
    expl_out = {
        "traces": expl["traces"],
        "by_state": expl["by_state"],
        "sentence_p95_ms": _pct(sla["sentence"]),
        "token_p95_ms": _pct(sla["token"]),
        "sentence_count": sla["sentence"].get("count", 0),
        "token_count": sla["token"].get("count", 0),
        **{
            k: expl.get(k)
            for k in ("expired_rate", "failed_rate", "expired_failed_rate", "shed_rate", "orphaned_rate")
        },
    }
    # The load summary's layout too, so readers of summary.json read a segment the same way.
    expl_out["sla_ms"] = {
        g: {"count": sla[g].get("count", 0), "p95_ms": expl_out[f"{g}_p95_ms"]} for g in ("sentence", "token")
    }
    if not expl["traces"]:
        expl_out["expired_failed_rate"] = None  # no explanation asked: no evidence either way
    values = {
        **{name: gates.REGISTRY[name].read(load) for name in slos if name in gates.REGISTRY},
        "chat_p95_ms": chat_out["p95_ms"],
        "error_rate": chat_out["error_rate"],
        "sentence_p95_ms": expl_out["sentence_p95_ms"],
        "token_p95_ms": expl_out["token_p95_ms"],
        "expired_failed_rate": expl_out["expired_failed_rate"],
    }
    return {
        **plan.to_json(),
        "plan": plan.to_json(),
        "run_id": load.get("run_id"),
        "started_at": load["started_at"],
        "ended_at": load["ended_at"],
        "duration_s": load["duration_s"],
        "stopped_by": load.get("stopped_by"),
        "generator": {k: load.get("generator", {}).get(k) for k in ("valid", "reasons", "achieved_rps")},
        "chat": chat_out,
        "explanations": expl_out,
        "health": dict(health),
        "slo_breaches": breaches(values, slos),
        "buckets": [_bucket(b, slos) for b in load.get("buckets", [])],
    }


def _health(segment: Mapping[str, Any], component: str, key: str) -> float | None:
    data = segment.get("health", {}).get(component, {})
    value = data.get(key) if data.get("ok") else None
    return float(value) if value is not None else None


def series_of(segments: Sequence[Mapping[str, Any]], t0: float) -> dict[str, list[Any]]:
    """Parallel arrays, one entry per segment; time ``t_h`` is hours from t0 to the segment's end."""

    def col(fn: Any) -> list[Any]:
        return [fn(s) for s in segments]

    return {
        "segment": col(lambda s: s["number"]),
        "t_h": col(lambda s: (float(s["ended_at"]) - t0) / 3600.0),
        "phase": col(lambda s: s["phase"]),
        "attach_rate": col(lambda s: s["attach_rate"]),
        "granularity": col(lambda s: s["granularity"]),
        "chat_rps": col(lambda s: s["chat"]["rps"]),
        "chat_p50_ms": col(lambda s: s["chat"]["p50_ms"]),
        "chat_p95_ms": col(lambda s: s["chat"]["p95_ms"]),
        "chat_rate_4xx": col(lambda s: s["chat"]["rate_4xx"]),
        "chat_rate_5xx": col(lambda s: s["chat"]["rate_5xx"]),
        "chat_error_rate": col(lambda s: s["chat"]["error_rate"]),
        "sentence_p95_ms": col(lambda s: s["explanations"]["sentence_p95_ms"]),
        "token_p95_ms": col(lambda s: s["explanations"]["token_p95_ms"]),
        "expired_rate": col(lambda s: s["explanations"]["expired_rate"]),
        "failed_rate": col(lambda s: s["explanations"]["failed_rate"]),
        "expired_failed_rate": col(lambda s: s["explanations"]["expired_failed_rate"]),
        "gateway_rss_bytes": col(lambda s: _health(s, "gateway", "rss_bytes")),
        "explainer_rss_bytes": col(lambda s: _health(s, "explainer", "rss_bytes")),
        "explainer_workers_rss_bytes": col(lambda s: _health(s, "explainer", "workers_rss_bytes")),
        "explainer_workers_open_fds": col(lambda s: _health(s, "explainer", "workers_open_fds")),
        "gateway_open_fds": col(lambda s: _health(s, "gateway", "open_fds")),
        "explainer_open_fds": col(lambda s: _health(s, "explainer", "open_fds")),
        "queue_lag_s": col(lambda s: _health(s, "explainer", "queue_lag_s")),
        "backpressure_level": col(lambda s: _health(s, "explainer", "backpressure_level")),
        "slo_breaches": col(lambda s: s["slo_breaches"]),
    }
