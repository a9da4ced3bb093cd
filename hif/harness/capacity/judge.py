"""One step's verdict from its files: warm-up discarded, each gate's value, margin and sample count.

A step is judged on what happened after its warm-up: HDR intervals starting at or after
``judged_from`` (latencies), chat records whose intended start is in the judged window (error
share, goodput: an attached chat's explanation may end after the window), explanation records
answered in it (expired/failed share). Several folders (a step and its
repeat) are judged together, their samples merged exactly.

Verdicts: ``fail`` when a gate with enough samples breaks (or the step saturated); ``inconclusive``
when no gate breaks but one has too few samples (never a pass); else ``pass``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from hif.harness import goodput, records
from hif.harness.capacity.gates import GOODPUT_GATES, LATENCY_GATES, Gate
from hif.harness.stats import LatencyHistogram, read_intervals

# Saturation: the median latency grew by more than this share of its gate's threshold from the first
# third of the judged window to the last, through the middle third (a queue building up), and the
# last third's p95 is past the threshold (the step's whole-window p95 may still hide it).
SATURATION_GROWTH = 0.2
GROWTH_TAGS = {"chat_p95_ms": "chat.intended", "sentence_p95_ms": "sla.sentence", "token_p95_ms": "sla.token"}


@dataclasses.dataclass(frozen=True)
class Window:
    folder: Path
    start_s: float  # judged from (the end of the warm-up)
    end_s: float  # the end of the offered load


def judge(gates: Sequence[Gate], windows: Sequence[Window], min_tail: int) -> dict[str, Any]:
    """``{"verdict", "gates": [...], "first_broken", "saturated", "growth"}`` for the merged windows."""
    values = _values(gates, windows)
    rows: list[dict[str, Any]] = []
    for gate in gates:
        value, samples = values[gate.name]
        need = gate.min_samples(min_tail)
        if value is None or samples < need:
            verdict = "inconclusive"
        else:
            verdict = "pass" if gate.holds(value) else "fail"
        rows.append(
            {
                "name": gate.name,
                "kind": gate.kind,
                "threshold": gate.threshold,
                "value": value,
                "margin": None if value is None else gate.margin(value),
                "samples": samples,
                "min_samples": need,
                "verdict": verdict,
            }
        )
    growth = _growth(gates, windows)
    saturated = any(g["saturated"] for g in growth.values())
    broken = [r for r in rows if r["verdict"] == "fail"]
    first = (
        min(broken, key=lambda r: r["margin"] if r["margin"] is not None else 0.0)["name"] if broken else None
    )
    if broken or saturated:
        verdict = "fail"
        first = first or next(n for n, g in growth.items() if g["saturated"]) + " (saturation)"
    elif any(r["verdict"] == "inconclusive" for r in rows):
        verdict = "inconclusive"
    else:
        verdict = "pass"
    return {
        "verdict": verdict,
        "gates": rows,
        "first_broken": first,
        "saturated": saturated,
        "growth": growth,
    }


def _values(gates: Sequence[Gate], windows: Sequence[Window]) -> dict[str, tuple[float | None, int]]:
    out: dict[str, tuple[float | None, int]] = {}
    for gate in gates:
        if gate.name in LATENCY_GATES:
            tag, p = LATENCY_GATES[gate.name]
            h = _merged(windows, tag)
            out[gate.name] = (h.percentile(p) if h.count else None, h.count)
    names = {g.name for g in gates}
    if "error_rate" in names:
        n = errors = 0
        for w in windows:
            for r in _lines(w.folder / records.CHAT_FILE):
                ts = r.get("intended_ts") or r.get("ts")
                if ts is not None and w.start_s <= ts < w.end_s:
                    n += 1
                    errors += r.get("error_class") is not None
        out["error_rate"] = (errors / n if n else None, n)
    if "expired_failed_rate" in names:
        n = bad = 0
        for w in windows:
            for r in _lines(w.folder / records.EXPLANATION_FILE):
                if w.start_s <= float(r.get("ts") or 0.0) and r.get("state") != "orphaned":
                    n += 1
                    bad += r.get("state") in ("expired", "failed")
        out["expired_failed_rate"] = (bad / n if n else None, n)
    if names & set(GOODPUT_GATES):
        targets = goodput.GoodputTargets.from_slos({g.name: g.threshold for g in gates})
        out.update(_goodput(windows, targets))
    return out


def _goodput(
    windows: Sequence[Window], targets: goodput.GoodputTargets
) -> dict[str, tuple[float | None, int]]:
    """goodput_rps and goodput_share over the judged windows (hif.harness.goodput's definition)."""
    n = good = 0
    seconds = 0.0
    for w in windows:
        good_traces = {
            r["trace_id"]
            for r in _lines(w.folder / records.EXPLANATION_FILE)
            if r.get("trace_id")
            and goodput.explanation_good(
                state=str(r.get("state")),
                granularity=r.get("granularity"),
                sla_ms=r.get("sla_ms"),
                targets=targets,
            )
        }
        seconds += max(w.end_s - w.start_s, 0.0)
        for r in _lines(w.folder / records.CHAT_FILE):
            ts = r.get("intended_ts") or r.get("ts")
            if ts is None or not w.start_s <= ts < w.end_s:
                continue
            n += 1
            ok = goodput.chat_good(
                status=int(r.get("status") or 0),
                error_class=r.get("error_class"),
                latency_ms=r.get("latency_ms"),
                targets=targets,
            )
            good += ok and (not r.get("attached") or r.get("trace_id") in good_traces)
    return {
        "goodput_rps": (good / seconds if seconds > 0 and n else None, n),
        "goodput_share": (good / n if n else None, n),
    }


def _merged(windows: Sequence[Window], tag: str, lo: float = 0.0, hi: float = 1.0) -> LatencyHistogram:
    """``tag``'s intervals starting in the [lo, hi) fraction of each judged window, merged."""
    out = LatencyHistogram()
    for w in windows:
        a = w.start_s + lo * (w.end_s - w.start_s)
        b = w.start_s + hi * (w.end_s - w.start_s) if hi < 1.0 else float("inf")
        for iv in read_intervals(w.folder / records.HISTOGRAM_LOG_FILE):
            if iv.tag == tag and a <= iv.start_s < b:
                out.merge(iv.histogram)
    return out


def _growth(gates: Sequence[Gate], windows: Sequence[Window]) -> dict[str, dict[str, Any]]:
    """Median latency per third of the judged window, for each gated latency; saturated when it
    climbs through all three by more than SATURATION_GROWTH x the threshold."""
    out = {}
    for gate in gates:
        tag = GROWTH_TAGS.get(gate.name)
        if tag is None:
            continue
        thirds = [_merged(windows, tag, i / 3, (i + 1) / 3) for i in range(3)]
        medians = [h.percentile(50) if h.count else None for h in thirds]
        last_p95 = thirds[2].percentile(95) if thirds[2].count else None
        rising = None not in medians and medians[0] < medians[1] < medians[2]  # type: ignore[operator]
        grew = rising and medians[2] - medians[0] > SATURATION_GROWTH * gate.threshold  # type: ignore[operator]
        # Only a climb that has already carried the tail past the threshold counts: a short step's
        # thirds are a few intervals each, and their medians wander without any queue building.
        over = last_p95 is not None and not gate.holds(last_p95)
        out[gate.name] = {
            "tag": tag,
            "p50_ms_by_third": medians,
            "last_third_p95_ms": last_p95,
            "saturated": bool(grew and over),
        }
    return out


def _lines(path: Path) -> Iterable[dict[str, Any]]:
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as fh:
        for raw in fh:
            with contextlib.suppress(orjson.JSONDecodeError):
                r = orjson.loads(raw)
                if isinstance(r, dict):
                    yield r
