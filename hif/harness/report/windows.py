"""Chaos windows: from the event log (exact to the record) or from the records' ``chaos`` field.

A window is one flag's active interval ``[start, end)``. Around it the report compares three
parts: *pre* (as long as the window, before it), *during*, and *post* (as long, after it); pre and
post stop at the run's edges and at other windows, so one fault's aftermath is not read as the
next one's baseline. With an event log every edge is a segment boundary of the scan, so each part
is a sum of whole segments; from the records alone windows are runs of time buckets in which some
request saw the flag.

Figures the records do not carry (inter-token latency: a chat record has no per-token gaps) come
from ``histograms.hlog`` instead, one histogram per tag and interval (the load runner's bucket,
1 s by default). An interval counts, whole, in the part that holds its midpoint, so one straddling
an edge goes to the side holding more of it; those parts are exact to the interval, not the record.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hif.harness.report.hist import SparseHist, from_latency_histogram
from hif.harness.stats import read_intervals

EVENTS = "event_log"
RECORDS = "records"


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    flag: str
    start: float
    end: float | None  # None: still active when the run ended
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Parts:
    """The pre/during/post intervals of one window, clipped to the run."""

    pre: tuple[float, float]
    during: tuple[float, float]
    post: tuple[float, float]


def merge_events(event_lists: Iterable[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Events of several results dirs, sorted, duplicates (same ts/action/flag) dropped."""
    seen: dict[tuple[float, str, str | None], dict[str, Any]] = {}
    for events in event_lists:
        for e in events:
            try:
                key = (float(e["ts"]), str(e.get("action")), e.get("flag"))
            except (TypeError, ValueError, KeyError):
                continue
            seen.setdefault(key, dict(e))
    return [seen[k] for k in sorted(seen, key=lambda k: (k[0], k[1], str(k[2])))]


def windows_from_events(events: Sequence[Mapping[str, Any]]) -> list[Window]:
    """Replay enable/disable/disable-all (and ``expires_at``) into per-flag intervals."""
    open_: dict[str, tuple[float, Mapping[str, Any]]] = {}
    out: list[Window] = []

    def close(flag: str, at: float) -> None:
        start, params = open_.pop(flag)
        expires = params.get("expires_at")
        end = min(at, expires) if isinstance(expires, int | float) else at
        out.append(Window(flag, start, max(end, start), params))

    for e in events:
        ts, action, flag = float(e["ts"]), e.get("action"), e.get("flag")
        for name in [n for n, (_, p) in open_.items() if _expired(p, ts)]:
            close(name, ts)
        if action == "disable-all":
            for name in list(open_):
                close(name, ts)
        elif action == "disable" and flag in open_:
            close(str(flag), ts)
        elif action == "disable" and flag and not e.get("before_window"):
            # enabled before the log's first entry (the load runner copies only the run's events,
            # plus the last one before it, marked before_window)
            out.append(Window(str(flag), -math.inf, ts))
        elif action == "enable" and flag:
            if flag in open_:  # re-enabled with new parameters: a new window starts
                close(str(flag), ts)
            open_[str(flag)] = (ts, dict(e.get("params") or {}))
    for name, (start, params) in list(open_.items()):
        expires = params.get("expires_at")
        out.append(Window(name, start, float(expires) if isinstance(expires, int | float) else None, params))
    return sorted(out, key=lambda w: (w.start, w.flag))


def _expired(params: Mapping[str, Any], ts: float) -> bool:
    expires = params.get("expires_at")
    return isinstance(expires, int | float) and expires <= ts


def parts(window: Window, others: Sequence[Window], run: tuple[float, float]) -> Parts:
    """Pre/during/post of ``window``: pre and post as long as during, cut at other windows.

    ``run`` (an estimate before the scan) only sizes windows that are open at one end; records
    outside the run simply do not exist, so no edge needs clipping to it.
    """
    if window.start == -math.inf:  # on since before the run: no pre, during from the first record
        end = window.end if window.end is not None else math.inf
        post_to = min([end + (end - run[0]), *[o.start for o in others if o.start >= end]])
        return Parts(pre=(-math.inf, -math.inf), during=(-math.inf, end), post=(end, max(post_to, end)))
    start = window.start
    if window.end is None:  # still on when the run ended: no post
        end, length = math.inf, max(run[1] - start, 0.0)
    else:
        end = max(window.end, start)
        length = end - start
    pre_from = max([start - length, *[_end(o) for o in others if _end(o) <= start]])
    post_to = min([end + length, *[o.start for o in others if o.start >= end]])
    return Parts(pre=(pre_from, start), during=(start, end), post=(end, max(post_to, end)))


def _end(w: Window) -> float:
    return w.end if w.end is not None else math.inf


def boundaries(windows: Sequence[Window], run: tuple[float, float]) -> tuple[float, ...]:
    """Every edge of every part: the scan splits records there so each part is whole segments."""
    edges: set[float] = set()
    for i, w in enumerate(windows):
        p = parts(w, [*windows[:i], *windows[i + 1 :]], run)
        edges.update((p.pre[0], p.during[0], p.during[1], p.post[1]))
    return tuple(sorted(e for e in edges if math.isfinite(e)))


def windows_from_buckets(
    flag_buckets: Mapping[str, Iterable[int]], t0: float, bucket_s: float
) -> list[Window]:
    """Runs of consecutive time buckets in which records carried a flag (no event log)."""
    out: list[Window] = []
    for flag, buckets in flag_buckets.items():
        run_start = prev = None
        for b in sorted(set(buckets)):
            if prev is not None and b == prev + 1:
                prev = b
                continue
            if run_start is not None and prev is not None:
                out.append(Window(flag, t0 + run_start * bucket_s, t0 + (prev + 1) * bucket_s))
            run_start = prev = b
        if run_start is not None and prev is not None:
            out.append(Window(flag, t0 + run_start * bucket_s, t0 + (prev + 1) * bucket_s))
    return sorted(out, key=lambda w: (w.start, w.flag))


@dataclasses.dataclass(frozen=True, slots=True)
class IntervalLog:
    """One hlog tag's histograms, sorted by their interval's midpoint (Unix seconds)."""

    mids: tuple[float, ...] = ()
    hists: tuple[SparseHist, ...] = ()

    def within(self, a: float, b: float) -> SparseHist:
        """The merged histogram of the intervals whose midpoint lies in ``[a, b)``.

        >>> log = IntervalLog((0.5, 1.5), (SparseHist.of_ms([1.0]), SparseHist.of_ms([2.0])))
        >>> log.within(1.0, 2.0).percentile_ms(50), log.within(-math.inf, math.inf).total
        (2.0, 2)
        """
        out = SparseHist()
        for h in self.hists[bisect.bisect_left(self.mids, a) : bisect.bisect_left(self.mids, b)]:
            out += h
        return out


def interval_log(paths: Iterable[Path], tag: str) -> IntervalLog:
    """``tag``'s intervals from the hlog files that exist (shards' intervals add up exactly)."""
    placed = sorted(
        [
            ((iv.start_s + iv.end_s) / 2.0, from_latency_histogram(iv.histogram))
            for path in paths
            if path.is_file()
            for iv in read_intervals(path, (tag,))
        ],
        key=lambda x: x[0],
    )
    return IntervalLog(tuple(m for m, _ in placed), tuple(h for _, h in placed))
