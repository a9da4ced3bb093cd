"""Compare two results folders: per metric, A's value, B's, B - A, and a block-bootstrap interval.

>>> data = build_compare(CompareSettings(baseline=Path("runs/a"), candidate=Path("runs/b")))  # doctest: +SKIP
>>> [m["name"] for m in data["metrics"] if m["verdict"] == "worse"]                         # doctest: +SKIP

A difference is *beyond noise* when its confidence interval (B minus A, over bootstrap draws that
resample each run's time blocks independently) excludes zero. *Worse* is higher for latencies and
shares, lower for goodput and the capacity frontier.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from hif.errors import HarnessError
from hif.harness import goodput, records
from hif.harness.compare.bootstrap import difference_interval
from hif.harness.compare.inputs import Source, load_source
from hif.harness.compare.measures import LOWER_IS_WORSE, measures, metric_names
from hif.harness.compare.settings import CompareSettings

COMPARE_JSON_FILE = records.COMPARE_JSON_FILE
COMPARE_MD_FILE = "compare.md"
# Settings that make two runs different experiments (shown by name when they differ).
RUN_KEYS = (
    "base_url",
    "concurrency",
    "arrival_rate",
    "rps_limit",
    "arrival",
    "attach_rate",
    "granularity",
    "featureset_used",
    "dataset",
)
CAPACITY_KEYS = (
    "base_url",
    "concurrency",
    "arrival",
    "attach_rates",
    "granularity",
    "features",
    "dataset",
    "slo",
)
EXIT_OK, EXIT_WORSE = 0, 1


def differences(a: Source, b: Source) -> list[str]:
    """``"attach_rate: 0.1 vs 0.3"`` for each deciding setting that differs."""
    if (a.kind == "capacity") != (b.kind == "capacity"):
        return [f"kind: {a.kind} vs {b.kind}"]
    keys = CAPACITY_KEYS if a.kind == "capacity" else RUN_KEYS
    sa, sb = a.settings, b.settings
    return [
        f"{k}: {_show(sa.get(k))} vs {_show(sb.get(k))}" for k in keys if _show(sa.get(k)) != _show(sb.get(k))
    ]


def build_compare(settings: CompareSettings) -> dict[str, Any]:
    """Everything compare.json holds; raises HarnessError (exit 2) when the runs do not compare."""
    a, b = load_source(settings.baseline), load_source(settings.candidate)
    diffs = differences(a, b)
    if diffs and not settings.force:
        raise HarnessError(f"the runs' settings differ ({'; '.join(diffs)}); --force compares them anyway")
    rows = _frontier_rows(a, b) if a.kind == "capacity" else _metric_rows(a, b, settings)
    worse = [r["name"] for r in rows if r["verdict"] == "worse"]
    failed = [m for m in settings.fail_on_metrics if m in worse]
    return {
        "schema": records.COMPARE_SCHEMA,
        "generated_at": time.time(),
        "a": {"path": str(a.path), "kind": a.kind, "settings": _public(a.settings)},
        "b": {"path": str(b.path), "kind": b.kind, "settings": _public(b.settings)},
        "settings_differences": diffs,
        "forced": bool(diffs),
        "method": {
            "resampled": "time blocks (HDR log intervals / summary buckets), not requests",
            "draws": settings.draws,
            "confidence": settings.confidence,
            "seed": settings.seed,
        },
        "metrics": rows,
        "worse": worse,
        "better": [r["name"] for r in rows if r["verdict"] == "better"],
        "fail_on": settings.fail_on_metrics,
        "failed": failed,
        "exit_code": EXIT_WORSE if failed else EXIT_OK,
    }


def _metric_rows(a: Source, b: Source, settings: CompareSettings) -> list[dict[str, Any]]:
    # One set of goodput targets for both sides (A's gates, else the reference), so the same chat
    # counts the same on each side.
    targets = goodput.GoodputTargets.from_gates(a.gates)
    ma, mb = measures(a, targets), measures(b, targets)
    rows = []
    for i, name in enumerate(metric_names()):
        if name not in ma and name not in mb:
            continue
        rows.append(
            _row(name, ma.get(name), mb.get(name), settings, np.random.default_rng([settings.seed, i]))
        )
    return rows


def _row(name: str, a: Any, b: Any, settings: CompareSettings, rng: np.random.Generator) -> dict[str, Any]:
    va, vb = (a.value() if a else None), (b.value() if b else None)
    row: dict[str, Any] = {
        "name": name,
        "a": va,
        "b": vb,
        "difference": None,
        "relative": None,
        "ci": None,
        "samples": [a.samples if a else 0, b.samples if b else 0],
        "worse_when": "lower" if name in LOWER_IS_WORSE else "higher",
        "verdict": "no_data",
    }
    if va is None or vb is None:
        return row
    row["difference"] = vb - va
    row["relative"] = (vb - va) / va if va else None
    ci = difference_interval(a.draws(rng, settings.draws), b.draws(rng, settings.draws), settings.confidence)
    row["ci"] = list(ci) if ci else None
    row["verdict"] = _verdict(ci, name in LOWER_IS_WORSE)
    return row


def _verdict(ci: tuple[float, float] | None, lower_is_worse: bool) -> str:
    if ci is None or ci[0] <= 0.0 <= ci[1]:
        return "within_noise"
    up = ci[0] > 0.0
    return "better" if up == lower_is_worse else "worse"


def _frontier_rows(a: Source, b: Source) -> list[dict[str, Any]]:
    """Per attach rate (and prompt length, capacity v2): the highest passing rate in each search;
    beyond noise when the two searches' intervals (last pass .. first fail) do not overlap."""

    def key(f: dict[str, Any]) -> tuple[float, int]:
        return float(f["attach_rate"]), int(f.get("prompt_tokens") or 0)  # 0: no prompt-length axis

    fa = {key(f): f for f in (a.capacity or {}).get("frontier") or []}
    fb = {key(f): f for f in (b.capacity or {}).get("frontier") or []}
    rows = []
    for attach, prompt in sorted(set(fa) | set(fb)):
        x, y = fa.get((attach, prompt)) or {}, fb.get((attach, prompt)) or {}
        va, vb = x.get("rate_rps"), y.get("rate_rps")
        row: dict[str, Any] = {
            "name": f"frontier@{attach:g}" + (f"/{prompt}tok" if prompt else ""),
            "a": va,
            "b": vb,
            "difference": None if va is None or vb is None else vb - va,
            "relative": (vb - va) / va if va and vb is not None else None,
            "ci": None,
            "intervals": [x.get("interval_rps"), y.get("interval_rps")],
            "samples": [x.get("steps", 0), y.get("steps", 0)],
            "worse_when": "lower",
            "verdict": "no_data",
        }
        ia, ib = x.get("interval_rps"), y.get("interval_rps")
        if va is not None and vb is not None and ia and ib:
            apart = ib[1] < ia[0] or ia[1] < ib[0]
            row["verdict"] = "within_noise" if not apart else ("worse" if vb < va else "better")
        rows.append(row)
    return rows


def _show(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != "auth_token"}


def save_compare(data: dict[str, Any], out_dir: Path) -> Path:
    """compare.json (atomically), then compare.md and compare.html rendered from the saved file."""
    from hif.harness.compare.markdown import render_html, render_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / COMPARE_JSON_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    saved = json.loads(path.read_text())
    (out_dir / COMPARE_MD_FILE).write_text(render_markdown(saved))
    (out_dir / "compare.html").write_text(render_html(saved))
    return path


def run_compare(settings: CompareSettings) -> dict[str, Any]:
    data = build_compare(settings)
    save_compare(data, settings.out_dir or settings.candidate)
    return data
