"""The soak part of the report: its per-segment series, the segments that broke an SLO, drift verdicts.

Reads ``soak_summary.json`` (schema ``hif.soak.v1``, written by :mod:`hif.harness.soak.runner`):
``series`` (parallel arrays, ``t_h`` plus one list per figure), ``segments`` (each with ``chat``,
``explanations`` and ``slo_breaches``), ``slo`` (thresholds) and ``drift``. The file is read
defensively: a field that is missing or of another shape is left out, never fatal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hif.harness.report.sections import DEFAULT_SLOS


def _map(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _series(data: Mapping[str, Any]) -> dict[str, list[float | None]]:
    raw = data.get("series")
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for name, values in raw.items():
        if isinstance(values, list) and any(_number(v) is not None for v in values):
            out[str(name)] = [_number(v) for v in values]
    return out


def _segment_values(seg: Mapping[str, Any]) -> dict[str, float | None]:
    """The SLO figures of one segment, looked up in the load summary's layout."""
    chat = _map(seg.get("chat"))
    expl = _map(seg.get("explanations"))
    lat = _map(chat.get("latency_ms"))
    sla = _map(expl.get("sla_ms"))

    def p95(h: Any) -> float | None:
        return _number(h.get("p95_ms")) if isinstance(h, Mapping) else None

    return {
        "chat_p95_ms": _number(lat.get("p95_ms")) if lat else _number(chat.get("p95_ms")),
        "error_rate": _number(chat.get("error_rate")),
        "sentence_p95_ms": p95(sla.get("sentence")),
        "token_p95_ms": p95(sla.get("token")),
        "expired_failed_rate": _number(expl.get("expired_failed_rate")),
    }


def _breaches(seg: Mapping[str, Any], targets: Mapping[str, float]) -> list[str]:
    given = seg.get("slo_breaches")
    if isinstance(given, list):
        return [str(b.get("name", b)) if isinstance(b, Mapping) else str(b) for b in given]
    if isinstance(given, Mapping):
        return sorted(str(k) for k, v in given.items() if v)
    values = _segment_values(seg)
    return [n for n, t in targets.items() if (v := values.get(n)) is not None and v > t]


def soak_section(data: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """The soak's series, one row per segment (SLO breaches flagged) and the drift/leak verdicts."""
    slo = data.get("slo")
    targets = (
        {k: float(v) for k, v in slo.items() if _number(v) is not None} if isinstance(slo, Mapping) else {}
    )
    targets = targets or dict(DEFAULT_SLOS)
    rows = []
    segments = _list(data.get("segments"))
    for i, seg in enumerate(s for s in segments if isinstance(s, Mapping)):
        plan = _map(seg.get("plan"))
        rows.append(
            {
                "segment": plan.get("number", i + 1),
                "started_at": _number(seg.get("started_at", seg.get("start_ts"))),
                "profile": plan.get("phase", plan.get("profile")),
                "attach_rate": _number(plan.get("attach_rate")),
                "granularity": plan.get("granularity"),
                **_segment_values(seg),
                "breaches": _breaches(seg, targets),
            }
        )
    drift = _map(data.get("drift"))
    per_series = _map(drift.get("series"))
    return {
        "source": source,
        "status": data.get("status"),
        "plan": data.get("plan"),
        "targets": targets,
        "series": _series(data),
        "segments": rows,
        "breaching_segments": [r["segment"] for r in rows if r["breaches"]],
        "drift": {
            "overall": drift.get("overall"),
            "findings": list(drift.get("findings") or []),
            "series": {
                str(k): {f: v.get(f) for f in ("verdict", "slope_per_hour", "relative_slope_per_hour", "r2")}
                for k, v in per_series.items()
                if isinstance(v, Mapping)
            },
        },
    }
