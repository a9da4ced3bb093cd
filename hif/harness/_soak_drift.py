"""Drift and leak detection over a soak's per-segment series: least-squares slope per hour.

A series drifts when it moves steadily, not when it is noisy: the verdict needs both a slope that
matters (relative to the series' level, or absolute for rates) and a fit that explains most of the
variance (r^2). The first segment is warm-up (caches, lazy imports, connection pools fill) and is
left out of the fit once there are enough points. A leak is a finding in the summary, never an error.

>>> fit = least_squares([0.0, 1.0, 2.0], [10.0, 12.0, 14.0])
>>> (fit.slope, fit.intercept, fit.r2)
(2.0, 10.0, 1.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

MIN_POINTS = 3
WARMUP_SEGMENTS = 1
MIN_R2 = 0.5
# A slope "per hour" fitted over a minute of data is an extrapolation, not evidence: verdicts need
# the fitted points to span at least this long (compressed soaks report insufficient-data).
MIN_SPAN_H = 0.25

STABLE = "stable"
DRIFT = "drift"
LEAK = "leak-suspected"
INSUFFICIENT = "insufficient-data"


@dataclasses.dataclass(frozen=True, slots=True)
class Fit:
    slope: float
    intercept: float
    r2: float
    n: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """When a series' upward slope is a finding.

    ``relative_per_hour``: slope / mean level that counts (0.1 = grows 10% of its level per hour).
    ``absolute_per_hour``: slope that counts regardless of level (rates, which may start at 0).
    ``floor_per_hour``: slopes below this are noise whatever the ratio (e.g. 1 MiB/h of memory).
    """

    finding: str
    relative_per_hour: float | None = None
    absolute_per_hour: float | None = None
    floor_per_hour: float = 0.0


# Series name -> rule; names match the keys of the summary's "series".
RULES: dict[str, Rule] = {
    "chat_p95_ms": Rule(finding=DRIFT, relative_per_hour=0.20, floor_per_hour=5.0),
    "chat_error_rate": Rule(finding=DRIFT, absolute_per_hour=0.01),
    "sentence_p95_ms": Rule(finding=DRIFT, relative_per_hour=0.20, floor_per_hour=20.0),
    "token_p95_ms": Rule(finding=DRIFT, relative_per_hour=0.20, floor_per_hour=50.0),
    "expired_failed_rate": Rule(finding=DRIFT, absolute_per_hour=0.02),
    "gateway_rss_bytes": Rule(finding=LEAK, relative_per_hour=0.10, floor_per_hour=8 * 2**20),
    "explainer_rss_bytes": Rule(finding=LEAK, relative_per_hour=0.10, floor_per_hour=8 * 2**20),
    "explainer_workers_rss_bytes": Rule(finding=LEAK, relative_per_hour=0.10, floor_per_hour=8 * 2**20),
    "gateway_open_fds": Rule(finding=LEAK, relative_per_hour=0.25, floor_per_hour=10.0),
    "explainer_workers_open_fds": Rule(finding=LEAK, relative_per_hour=0.25, floor_per_hour=10.0),
    "explainer_open_fds": Rule(finding=LEAK, relative_per_hour=0.25, floor_per_hour=10.0),
    "queue_lag_s": Rule(finding=DRIFT, absolute_per_hour=5.0),
}


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    """Ordinary least squares y = slope * x + intercept, with r^2 (1.0 for a flat exact fit)."""
    n = len(xs)
    if n != len(ys) or n < 2:
        raise ValueError("least squares needs two or more (x, y) pairs of equal length")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("least squares needs at least two distinct x values")
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 if ss_tot == 0 else max(0.0, 1.0 - ss_res / ss_tot)
    return Fit(slope=slope, intercept=intercept, r2=r2, n=n)


def _points(t_h: Sequence[float], values: Sequence[float | None]) -> tuple[list[float], list[float]]:
    pairs = [(t, v) for t, v in zip(t_h, values, strict=True) if v is not None and math.isfinite(v)]
    if len(pairs) - WARMUP_SEGMENTS >= MIN_POINTS:
        pairs = pairs[WARMUP_SEGMENTS:]
    return [t for t, _ in pairs], [v for _, v in pairs]


def judge(rule: Rule, fit: Fit, mean: float) -> str:
    """The verdict for one fitted series: stable unless it rises steadily and materially."""
    if fit.slope <= rule.floor_per_hour or fit.r2 < MIN_R2:
        return STABLE
    if rule.absolute_per_hour is not None and fit.slope >= rule.absolute_per_hour:
        return rule.finding
    if rule.relative_per_hour is not None and mean > 0 and fit.slope / mean >= rule.relative_per_hour:
        return rule.finding
    return STABLE


def analyse_series(name: str, t_h: Sequence[float], values: Sequence[float | None], *,
                   min_span_h: float = MIN_SPAN_H) -> dict[str, Any]:
    """Slope per hour, r^2 and verdict for one series.

    ``insufficient-data`` under MIN_POINTS points or when they span less than ``min_span_h``;
    the slope is still reported then, for what it is worth.
    """
    rule = RULES.get(name, Rule(finding=DRIFT, relative_per_hour=0.2))
    xs, ys = _points(t_h, values)
    out: dict[str, Any] = {"n": len(xs), "span_h": (max(xs) - min(xs)) if xs else 0.0,
                           "slope_per_hour": None, "r2": None, "mean": None,
                           "relative_slope_per_hour": None, "verdict": INSUFFICIENT}
    if len(xs) < MIN_POINTS or len(set(xs)) < 2:
        return out
    fit = least_squares(xs, ys)
    mean = sum(ys) / len(ys)
    out.update(slope_per_hour=fit.slope, r2=fit.r2, mean=mean,
               relative_slope_per_hour=fit.slope / mean if mean else None)
    if out["span_h"] >= min_span_h:
        out["verdict"] = judge(rule, fit, mean)
    return out


def analyse(t_h: Sequence[float], series: dict[str, list[float | None]], *,
            min_span_h: float = MIN_SPAN_H) -> dict[str, Any]:
    """Drift/leak analysis of every series with a rule, plus an overall verdict and findings."""
    per_series = {name: analyse_series(name, t_h, series[name], min_span_h=min_span_h)
                  for name in RULES if name in series}
    findings = [
        f"{name}: {res['verdict']} (slope {res['slope_per_hour']:.4g}/h, "
        f"{100 * (res['relative_slope_per_hour'] or 0):.1f}% of its level per hour, r2 {res['r2']:.2f})"
        for name, res in per_series.items()
        if res["verdict"] in (DRIFT, LEAK)
    ]
    verdicts = {res["verdict"] for res in per_series.values()}
    if LEAK in verdicts:
        overall = LEAK
    elif DRIFT in verdicts:
        overall = DRIFT
    elif verdicts and verdicts <= {INSUFFICIENT}:
        overall = INSUFFICIENT
    else:
        overall = STABLE
    return {"series": per_series, "overall": overall, "findings": findings,
            "warmup_segments_excluded": WARMUP_SEGMENTS, "min_r2": MIN_R2, "min_span_h": min_span_h}
