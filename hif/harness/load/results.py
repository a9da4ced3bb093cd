"""Result files of one run: buffered JSONL writers, the histogram log, chaos events, summary.json.

Lines go to 1 MiB-buffered files (no syscall per line on the hot path) and are flushed once per
time bucket, so a crash loses at most one bucket and a reader sees whole lines only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from hif import chaos
from hif.config import chaos_control_path
from hif.harness import records
from hif.harness.stats import LOG_HEADER, Interval, write_intervals

BUFFER_BYTES = 1 << 20
# Files an earlier run may have left that this run does not rewrite at its start: a fresh run
# removes them, so a report of this folder never mixes in another run (a folder holds one run).
STALE_FILES = (
    records.CHAOS_EVENTS_FILE,
    records.METRICS_FILE,
    records.SUMMARY_FILE,
    records.SOAK_SUMMARY_FILE,
    records.REPORT_JSON_FILE,
    records.REPORT_MD_FILE,
    "report.html",
)
STALE_PATTERNS = ("chart_*.png",)


def clear_stale(results_dir: Path, *, keep: Iterable[str] = ()) -> list[str]:
    """Remove an earlier run's files from ``results_dir``; returns the names removed."""
    kept = set(keep)
    paths = [results_dir / n for n in STALE_FILES] + [p for g in STALE_PATTERNS for p in results_dir.glob(g)]
    removed = []
    for path in paths:
        if path.name in kept:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


class ResultFiles:
    """The open result files of one run in ``results_dir`` (truncated, or appended to)."""

    def __init__(self, results_dir: Path, *, append: bool, keep: Iterable[str] = ()) -> None:
        self.dir = results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        mode = "a" if append else "w"
        self.chat = open(results_dir / records.CHAT_FILE, mode + "b", buffering=BUFFER_BYTES)  # noqa: SIM115
        self.explanations = open(  # noqa: SIM115 - closed by close()
            results_dir / records.EXPLANATION_FILE, mode + "b", buffering=BUFFER_BYTES
        )
        hlog_path = results_dir / records.HISTOGRAM_LOG_FILE
        fresh = not append or not hlog_path.exists() or hlog_path.stat().st_size == 0
        self.hlog = self._open(records.HISTOGRAM_LOG_FILE, mode)
        if fresh:
            self.hlog.write(LOG_HEADER)
        if not append:
            clear_stale(results_dir, keep=keep)

    def _open(self, name: str, mode: str) -> IO[str]:
        return open(self.dir / name, mode, buffering=BUFFER_BYTES, encoding="utf-8")

    def chat_line(self, record: Mapping[str, Any]) -> None:
        self.chat.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def explanation_line(self, record: Mapping[str, Any]) -> None:
        self.explanations.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def intervals(self, intervals: Iterable[Interval]) -> None:
        write_intervals(self.hlog, intervals)

    def flush(self) -> None:
        for fh in (self.chat, self.explanations, self.hlog):
            fh.flush()

    def close(self) -> None:
        for fh in (self.chat, self.explanations, self.hlog):
            fh.close()


def copy_chaos_events(results_dir: Path, start_s: float, end_s: float, control: Path | None = None) -> int:
    """Append the chaos event log entries inside ``[start_s, end_s]`` to chaos_events.jsonl.

    The newest change *before* the window is copied too (marked ``"before_window": true``) so a
    report knows which flags were already on when the run began.
    """
    events = chaos.read_events(chaos.event_log_path(control or chaos_control_path()))
    inside = [e for e in events if start_s <= float(e["ts"]) <= end_s]
    before = [e for e in events if float(e["ts"]) < start_s]
    if before:
        inside.insert(0, {**before[-1], "before_window": True})
    if inside:
        with open(results_dir / records.CHAOS_EVENTS_FILE, "a", encoding="utf-8") as fh:
            fh.writelines(orjson.dumps(e).decode() + "\n" for e in inside)
    return len(inside)


def write_summary(results_dir: Path, summary: dict[str, Any]) -> Path:
    """summary.json, written atomically (temp + rename) so a reader never sees half a file."""
    path = results_dir / records.SUMMARY_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)
    return path
