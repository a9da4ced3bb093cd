"""The report: read result dirs, save ``report.json``, then render ``report.md`` and charts from it.

>>> data = build_report([Path("tests/load/results")])           # doctest: +SKIP
>>> path = save_report(data, Path("tests/load/results"))         # doctest: +SKIP
>>> render_report(path)                                          # doctest: +SKIP

Several results dirs (load shards) are merged exactly: every JSONL line of every dir feeds the
same HDR histograms and counters, so percentiles are re-aggregated, never averaged. Chaos windows
come from ``chaos_events.jsonl`` in the dirs (else from the records' ``chaos`` field), SLO targets
from ``summary.json`` (else the runbook's defaults), the soak's series from ``soak_summary.json``.
Every view (markdown, PNG charts) is rendered from the saved ``report.json``, as GuideLLM does.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from hif import chaos
from hif.config import chaos_control_path
from hif.errors import HarnessError
from hif.harness import prometheus
from hif.harness.goodput import DEFINITION as GOODPUT_DEFINITION
from hif.harness.goodput import GoodputTargets
from hif.harness.load.stream import ITL
from hif.harness.records import (
    CAPACITY_JSON_FILE,
    CHAOS_EVENTS_FILE,
    CHAT_FILE,
    COMPARE_JSON_FILE,
    EXPLANATION_FILE,
    HISTOGRAM_LOG_FILE,
    METRICS_FILE,
    REPORT_JSON_FILE,
    REPORT_SCHEMA,
    SOAK_SUMMARY_FILE,
    SUMMARY_FILE,
    upgrade_report,
)
from hif.harness.report import capacity as capacity_view
from hif.harness.report import compare as compare_view
from hif.harness.report import metrics, saturation
from hif.harness.report import sections as build
from hif.harness.report import windows as win
from hif.harness.report.scan import (
    CHAT,
    EXPLANATION,
    RANGE_BYTES,
    Partial,
    Plan,
    _scan_task,
    default_jobs,
    line_ranges,
    peek_span,
)
from hif.harness.report.settings import ReportSettings

MAX_SERIES_BUCKETS = 240
NICE_BUCKETS_S = (1, 2, 3, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
PARALLEL_MIN_BYTES = 64 << 20  # below this, worker start-up costs more than it saves


def bucket_seconds(span_s: float) -> float:
    """A round bucket width giving at most MAX_SERIES_BUCKETS points over the run."""
    want = span_s / MAX_SERIES_BUCKETS
    return float(next((b for b in NICE_BUCKETS_S if b >= want), NICE_BUCKETS_S[-1]))


def _inputs(dirs: Sequence[Path]) -> list[tuple[str, Path]]:
    for d in dirs:
        if not d.is_dir():
            raise HarnessError(f"results dir {d} does not exist")
    files = [
        (kind, d / name) for d in dirs for kind, name in ((CHAT, CHAT_FILE), (EXPLANATION, EXPLANATION_FILE))
    ]
    present = [(k, f) for k, f in files if f.is_file()]
    # a capacity search or a comparison folder holds no records of its own: its section is the report
    if not present and any((d / n).is_file() for d in dirs for n in (CAPACITY_JSON_FILE, COMPARE_JSON_FILE)):
        return []
    if not present:
        names = ", ".join(str(d) for d in dirs)
        raise HarnessError(f"no {CHAT_FILE} or {EXPLANATION_FILE} in {names}")
    return present


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _plan(
    files: list[tuple[str, Path]], windows: list[win.Window], targets: GoodputTargets
) -> tuple[Plan, dict[int, win.Parts]]:
    spans = [s for _, f in files if (s := peek_span(f))]
    first = min((s[0] for s in spans), default=0.0)
    last = max((s[1] for s in spans), default=first)
    bucket_s = bucket_seconds(last - first)
    t0 = math.floor(first / bucket_s) * bucket_s  # aligned, so shards scanned apart share the grid
    run = (first, last)  # sizes windows still open at the end (see _report_windows.parts)
    # a window over before the first record (an event copied from before the run) says nothing
    windows[:] = [w for w in windows if w.end is None or w.end > first]
    parts = {i: win.parts(w, windows[:i] + windows[i + 1 :], run) for i, w in enumerate(windows)}
    plan = Plan(t0=t0, bucket_s=bucket_s, boundaries=win.boundaries(windows, run), goodput=targets)
    return plan, parts


def scan(
    files: list[tuple[str, Path]],
    plan: Plan,
    jobs: int,
    *,
    range_bytes: int = RANGE_BYTES,
    min_parallel_bytes: int = PARALLEL_MIN_BYTES,
) -> Partial:
    """Aggregate every file; ranges run in ``jobs`` processes when the input is large.

    Explanation files go first: goodput joins each attached chat to its trace, so the chat scan
    needs the keys of the good traces (``Plan.good_traces``)."""
    explanation_files = [(k, f) for k, f in files if k == EXPLANATION]
    chat_files = [(k, f) for k, f in files if k == CHAT]
    total = _scan(explanation_files, plan, jobs, range_bytes, min_parallel_bytes)
    chat_plan = dataclasses.replace(plan, good_traces=frozenset(total.good_traces))
    return total.merge(_scan(chat_files, chat_plan, jobs, range_bytes, min_parallel_bytes))


def _scan(
    files: list[tuple[str, Path]], plan: Plan, jobs: int, range_bytes: int, min_parallel_bytes: int
) -> Partial:
    tasks = [(kind, str(f), a, b, plan) for kind, f in files for a, b in line_ranges(f, range_bytes)]
    total = Partial()
    size = sum(f.stat().st_size for _, f in files)
    jobs = jobs or default_jobs()
    if jobs <= 1 or size < min_parallel_bytes or len(tasks) <= 1:
        for task in tasks:
            total.merge(_scan_task(task))
        return total
    # spawn, not fork: the caller may be a threaded process (the soak runner calls this in-process)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        for part in pool.map(_scan_task, tasks):
            total.merge(part)
    return total


def chaos_snapshot(path: Path | None) -> dict[str, Any]:
    path = path or chaos_control_path()
    state = chaos.read_state(path)
    flags = {n: f.to_json() for n, f in sorted(state.active().items())}
    return {"path": str(path), "flags": flags, "invalid": dict(state.invalid), "error": state.problem}


def build_report(
    dirs: Sequence[Path], settings: ReportSettings | None = None, fetch: metrics.Fetch = metrics.fetch_text
) -> dict[str, Any]:
    """Everything report.json holds, computed from the result files (and optional /metrics)."""
    settings = settings or ReportSettings(results_dirs=tuple(dirs))
    started = time.perf_counter()
    files = _inputs(dirs)
    events = win.merge_events(chaos.read_events(d / CHAOS_EVENTS_FILE) for d in dirs)
    windows = win.windows_from_events(events)
    summaries = [s for d in dirs if (s := _read_json(d / SUMMARY_FILE))]
    targets = GoodputTargets.from_gates(
        g for s in summaries for g in ((s.get("slo") or {}).get("gates") or []) if isinstance(g, dict)
    )
    plan, parts = _plan(files, windows, targets)
    p = scan(files, plan, settings.jobs)
    run = (p.t_min, p.t_max) if p.t_max >= p.t_min else (plan.t0, plan.t0)
    # ITL is in no record (a chat line has no per-token gaps): the hlog's stream.itl intervals
    itl = win.interval_log((d / HISTOGRAM_LOG_FILE for d in dirs), ITL)
    series = build.time_series(p, plan.t0, plan.bucket_s, itl)
    exact = bool(windows)
    if not exact:  # no event log: windows from the records' chaos field, at bucket resolution
        windows = win.windows_from_buckets(build.flag_buckets(p), plan.t0, plan.bucket_s)
        wide = (plan.t0 - 1e12, plan.t0 + 1e12)
        parts = {i: win.parts(w, windows[:i] + windows[i + 1 :], wide) for i, w in enumerate(windows)}
    kw = {
        "exact": exact,
        "bounds": plan.boundaries,
        "t0": plan.t0,
        "bucket_s": plan.bucket_s,
        "run": run,
        "itl": itl,
    }
    # the runner's load window, when every folder's summary gives its part of it
    load_s = build.load_window_s(summaries, run) if len(summaries) == len(dirs) else None
    head = build.headline(p, run, itl, load_s)
    scrapes = sorted(
        (x for d in dirs for x in prometheus.read_log(d / METRICS_FILE)), key=lambda x: float(x["ts"])
    )
    urls = metrics.now_urls(settings.metrics_url_gateway, settings.metrics_url_explainer, summaries)
    window_reports = [build.window_report(p, w, parts[i], series, **kw) for i, w in enumerate(windows)]
    for w in window_reports:
        w["metrics"] = metrics.window_deltas(scrapes, float(w["start"]), float(w["end"] or run[1]))
    metrics_section = metrics.section(scrapes, urls, fetch)
    run_info = {
        "start_ts": run[0],
        "end_ts": run[1],
        "duration_s": max(run[1] - run[0], 0.0),
        "bucket_s": plan.bucket_s,
    }
    return {
        "schema": REPORT_SCHEMA,
        "generated_at": time.time(),
        "inputs": {
            "results_dirs": [str(d) for d in dirs],
            "files": [str(f) for _, f in files],
            "lines": p.lines,
            "corrupt_lines": p.corrupt,
            "corrupt_examples": p.examples,
            "summaries": len(summaries),
            "warnings": settings_differences(dirs, summaries),
            "scan_seconds": round(time.perf_counter() - started, 3),
        },
        "run": run_info,
        **head,
        "goodput": {
            "definition": GOODPUT_DEFINITION,
            "targets": targets.to_json(),
            "goodput": head["chat"]["goodput"],
            "chats": head["chat"]["requests"],
            "goodput_rps": head["chat"]["goodput_rps"],
            "goodput_share": head["chat"]["goodput_share"],
        },
        "saturation": saturation.analyse(series, window_reports, run_info, metrics_section["explainer"]),
        "metrics": metrics_section,
        "chaos": {
            "snapshot": chaos_snapshot(settings.chaos_path),
            "source": (win.EVENTS if exact else win.RECORDS) if windows else None,
            "events": events,
            "windows": window_reports,
        },
        "slo": build.slo_table(summaries, head),
        "generator": [s.get("generator") for s in summaries if s.get("generator")],
        "series": series,
        "soak": _soak(dirs),
        "capacity": capacity_view.section(dirs),
        "compare": compare_view.section(dirs),
    }


# Settings that differ between the shards of one run by design, or do not change what was measured.
PER_SHARD_SETTINGS = frozenset(
    {
        "shard",
        "results_dir",
        "run_id",
        "append",
        "live",
        "keep_files",
        "seed",
        "metrics_url_gateway",
        "metrics_url_explainer",
        "auth_token",
    }
)


def settings_differences(dirs: Sequence[Path], summaries: Sequence[dict[str, Any]]) -> list[str]:
    """One warning naming the settings that differ between merged folders: runs with different
    settings merged into one report mix two experiments."""
    if len(summaries) < 2:
        return []
    settings = [s.get("settings") or {} for s in summaries]
    keys = sorted({k for st in settings for k in st} - PER_SHARD_SETTINGS)
    differ = [k for k in keys if len({json.dumps(st.get(k), sort_keys=True) for st in settings}) > 1]
    if not differ:
        return []
    parts = [f"{k} ({' vs '.join(json.dumps(st.get(k)) for st in settings)})" for k in differ]
    return [f"merging runs with different settings: {'; '.join(parts)}"]


def _soak(dirs: Sequence[Path]) -> dict[str, Any] | None:
    from hif.harness.report.soak import soak_section

    found = [(d, s) for d in dirs if (s := _read_json(d / SOAK_SUMMARY_FILE))]
    return soak_section(found[0][1], source=str(found[0][0] / SOAK_SUMMARY_FILE)) if found else None


def save_report(data: dict[str, Any], out_dir: Path) -> Path:
    """Write report.json atomically; views are rendered from this file, never from live state."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_JSON_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    tmp.replace(path)
    return path


def render_report(report_json: Path, *, charts: bool = True) -> Path:
    """report.md (and PNG charts beside it) and report.html from a saved report.json."""
    from hif.harness.report.markdown import render_markdown

    data = upgrade_report(json.loads(report_json.read_text()))
    chart_files: dict[str, str] = {}
    if charts:
        from hif.harness.report.charts import render_charts

        chart_files = render_charts(data, report_json.parent)
        chart_files.update(capacity_view.render_svg(data, report_json.parent))
    md = report_json.parent / "report.md"
    md.write_text(render_markdown(data, chart_files))
    from hif.harness.report.html import render_html

    render_html(data, report_json.parent)
    return md


def run_report(settings: ReportSettings, fetch: metrics.Fetch = metrics.fetch_text) -> dict[str, Any]:
    """Build, save, re-read and render; returns the saved data (what the CLI prints a line of)."""
    data = build_report(settings.results_dirs, settings, fetch)
    out_dir = settings.out_dir or settings.results_dirs[0]
    path = save_report(data, out_dir)
    render_report(path, charts=settings.charts)
    return data
