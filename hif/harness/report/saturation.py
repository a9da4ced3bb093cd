"""Is the explanation sidecar saturated? Offered explanation rate against completed rate.

*Offered*: traces the chats asked for whose outcome is known, counted at the chat answer (orphaned
traces, cut off by the run's end, and rate_limited ones, refused by the tenant's limit before the
explainer saw them, are left out). *Completed*: traces that reached ``complete``, whatever their
SLA. Both come from the records, per time bucket of the report's series.

The sidecar is **saturated** when offered exceeds SATURATION_RATIO x completed in consecutive time
buckets covering at least SATURATION_SUSTAIN_S seconds, counting only buckets outside chaos
windows (a fault that sheds everything is the fault's effect, read in the chaos tables, not a
baseline that was already beyond capacity). When it is, the explanation lane's chaos deltas are
masked: the lane was already failing, and a fault cannot make much worse what already fails, or
it makes it look better (everything shed leaves nothing to expire).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SATURATION_RATIO = 1.1
SATURATION_SUSTAIN_S = 30.0


def over(offered: float | None, completed: float | None) -> bool:
    """One interval's verdict: offered above SATURATION_RATIO x completed (nothing offered: no)."""
    if not offered:
        return False
    return offered > SATURATION_RATIO * (completed or 0.0)


def part_saturated(expl: Mapping[str, Any]) -> bool | None:
    """A chaos window part's verdict from its explanation figures; None when it holds no trace."""
    if not expl.get("traces") or expl.get("offered_rps") is None:
        return None
    return over(expl["offered_rps"], expl["completed_rps"])


def _in_windows(t: float, width: float, windows: Sequence[Mapping[str, Any]], end_ts: float) -> bool:
    for w in windows:
        stop = w["end"] if w.get("end") is not None else end_ts
        if t < stop and t + width > w["start"]:
            return True
    return False


def analyse(
    series: Mapping[str, Any],
    windows: Sequence[Mapping[str, Any]],
    run: Mapping[str, Any],
    explainer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's verdict: ``saturated``, the longest sustained stretch, and by how much.

    ``ratio`` is offered / completed over the saturated buckets (null when nothing completed:
    every offered explanation failed), ``excess_rps`` the explanations per second beyond what
    completed there. ``explainer_now``: the explainer's queue lag and job counts read from its
    /metrics at report time (labelled "now": counters span the process's life, not this run).
    """
    t, width = series.get("t") or [], float(series.get("bucket_s") or 1.0)
    offered, completed = series.get("expl_offered_rps") or [], series.get("expl_completed_rps") or []
    flagged: list[int] = []
    runs: list[tuple[int, int]] = []  # [first, last] bucket indexes of consecutive over-threshold buckets
    for i, ts in enumerate(t):
        if _in_windows(ts, width, windows, run["end_ts"]) or not over(offered[i], completed[i]):
            continue
        if runs and i == runs[-1][1] + 1 and abs(ts - t[i - 1] - width) < 1e-6:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    sustained = [(a, b) for a, b in runs if (b - a + 1) * width >= SATURATION_SUSTAIN_S]
    for a, b in sustained:
        flagged.extend(range(a, b + 1))
    off = sum(offered[i] or 0.0 for i in flagged) * width
    done = sum(completed[i] or 0.0 for i in flagged) * width
    # the run's first and last buckets are partial: never claim more seconds than the run lasted
    span = len(flagged) * width  # the rates' denominator: the buckets' own width
    seconds = min(span, max(float(run.get("duration_s") or 0.0), width))
    longest = min(max(((b - a + 1) * width for a, b in sustained), default=0.0), seconds)
    return {
        "threshold": {"ratio": SATURATION_RATIO, "sustain_s": SATURATION_SUSTAIN_S},
        "saturated": bool(sustained),
        "saturated_s": seconds,
        "longest_s": longest,
        "first_ts": t[sustained[0][0]] if sustained else None,
        "offered_rps": off / span if span else None,
        "completed_rps": done / span if span else None,
        "ratio": off / done if done else None,
        "excess_rps": (off - done) / span if span else None,
        "explainer_now": _explainer_now(explainer),
    }


def _explainer_now(ex: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not ex or not ex.get("ok"):
        return None
    return {"queue_lag_s": ex.get("queue_lag_s"), "jobs_total": dict(ex.get("jobs") or {})}


def first_lines(sat: Mapping[str, Any] | None, run_start: float) -> list[str]:
    """The sentences report.md (and report.html) open with."""
    if not sat:
        return []
    th = sat["threshold"]
    rule = f"offered > {th['ratio']:g}x completed for {th['sustain_s']:g} s or more, outside chaos windows"
    now = sat.get("explainer_now") or {}
    lag = now.get("queue_lag_s")
    lag_note = f" Explainer queue lag now (at report time): {lag:.1f} s." if lag is not None else ""
    if not sat["saturated"]:
        return [f"**Explanation sidecar not saturated** ({rule}).{lag_note}"]
    ratio = "nothing completed" if sat["ratio"] is None else f"{sat['ratio']:.1f}x what it completed"
    return [
        f"**Explanation sidecar saturated** for {sat['saturated_s']:.0f} s "
        f"from +{max(0.0, sat['first_ts'] - run_start):.0f} s into the run: "
        f"offered {sat['offered_rps']:.1f} explanations/s, completed {sat['completed_rps']:.1f}/s "
        f"({ratio}; {sat['excess_rps']:.1f}/s beyond capacity). Chaos deltas on the explanation lane "
        f"are masked: it was failing before any fault ({rule}).{lag_note}",
    ]
