"""Stream the JSONL result files into mergeable aggregates: counts and HDR buckets per cell.

A *cell* is (time bucket, segment): time buckets of ``bucket_s`` seconds from ``t0`` feed the
charts and the recovery search; segments are the intervals between chaos-window boundaries
(``numpy.searchsorted`` of the record's ``ts``), so a chaos window's pre/during/post sums whole
segments and is exact to the record, whatever the bucket width. Files are read in line-aligned
byte ranges, each parsed with orjson line by line (a corrupt line is counted and skipped) and
folded into numpy arrays per block, so memory stays flat however long the file is. Ranges run in
parallel processes and their :class:`Partial` results add up exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterator
from math import isfinite
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from hif.harness.goodput import GoodputTargets, trace_key
from hif.harness.report.hist import quantize_us, to_us

CHAT = "chat"
EXPLANATION = "explanation"
BLOCK_BYTES = 16 << 20
RANGE_BYTES = 96 << 20
MAX_EXAMPLES = 5
_TB_OFFSET = 1 << 20  # time buckets may fall before t0 (records are not sorted): shift to >= 0
_SEG_SPAN = 1 << 16
_CAT_SPAN = 1 << 20

Cell = tuple[int, int]  # (time bucket, segment)
# Chat histograms of streamed chats, beside "service" and "intended" (docs/load.md defines each)
STREAM_LABELS = ("ttft", "intended_ttft", "tpot")


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What every worker needs to place a record: bucket grid, chaos-window boundaries, and for the
    chat files the goodput targets and the keys of the traces whose explanation was good (found by
    scanning the explanation files first; see hif/harness/goodput.py)."""

    t0: float
    bucket_s: float
    boundaries: tuple[float, ...] = ()
    goodput: GoodputTargets = GoodputTargets()
    good_traces: frozenset[int] = frozenset()


@dataclasses.dataclass(slots=True)
class Partial:
    """Aggregates of some byte ranges; ``merge`` is exact (sums of counts)."""

    lines: dict[str, int] = dataclasses.field(default_factory=lambda: {CHAT: 0, EXPLANATION: 0})
    corrupt: dict[str, int] = dataclasses.field(default_factory=lambda: {CHAT: 0, EXPLANATION: 0})
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    t_min: float = float("inf")
    t_max: float = float("-inf")
    # (tb, seg, category tuple) -> requests; see _chat_category / _explanation_category
    chat_counts: dict[tuple[int, int, tuple[Any, ...]], int] = dataclasses.field(default_factory=dict)
    expl_counts: dict[tuple[int, int, tuple[Any, ...]], int] = dataclasses.field(default_factory=dict)
    # {HDR bucket us: count} per (segment, name) at 3 significant figures (headline and chaos
    # windows) and per (time bucket, name) at 2 (the series); chat names are "service" and
    # "intended" (answered requests), explanation names the granularity (complete traces only)
    seg_hist: dict[tuple[str, int, str], dict[int, int]] = dataclasses.field(default_factory=dict)
    tb_hist: dict[tuple[str, int, str], dict[int, int]] = dataclasses.field(default_factory=dict)
    bound_hist: dict[str, dict[int, int]] = dataclasses.field(default_factory=dict)
    polls: int = 0
    good_traces: set[int] = dataclasses.field(default_factory=set)  # explanation files only

    def merge(self, other: Partial) -> Partial:
        for kind in (CHAT, EXPLANATION):
            self.lines[kind] += other.lines[kind]
            self.corrupt[kind] += other.corrupt[kind]
        self.examples = (self.examples + other.examples)[:MAX_EXAMPLES]
        self.t_min, self.t_max = min(self.t_min, other.t_min), max(self.t_max, other.t_max)
        for mine, theirs in ((self.chat_counts, other.chat_counts), (self.expl_counts, other.expl_counts)):
            _add_counts(mine, theirs)
        _add_hists(self.seg_hist, other.seg_hist)
        _add_hists(self.tb_hist, other.tb_hist)
        _add_hists(self.bound_hist, other.bound_hist)
        self.polls += other.polls
        self.good_traces |= other.good_traces
        return self


def _add_counts(into: dict[Any, int], other: dict[Any, int]) -> None:
    for k, n in other.items():
        into[k] = into.get(k, 0) + n


def _add_hists(into: dict[Any, dict[int, int]], other: dict[Any, dict[int, int]]) -> None:
    for k, h in other.items():
        _add_counts(into.setdefault(k, {}), h)


# --- planning ----------------------------------------------------------------------------------


def line_ranges(path: Path, range_bytes: int = RANGE_BYTES) -> list[tuple[int, int]]:
    """Split a file into byte ranges that start and end on line boundaries."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as fh:
        for pos in range(range_bytes, size, range_bytes):
            if pos <= cuts[-1]:
                continue
            fh.seek(pos - 1)
            fh.readline()  # finishes the line holding byte pos-1: the next line starts here
            cuts.append(fh.tell())
    cuts.append(size)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def peek_span(path: Path, probe_lines: int = 50) -> tuple[float, float] | None:
    """(first ts, last ts) from the head and tail of a file, to size the bucket grid before the scan."""
    stamps: list[float] = []
    with open(path, "rb") as fh:
        head = [fh.readline() for _ in range(probe_lines)]
        fh.seek(max(0, path.stat().st_size - 65536))
        tail = fh.read().splitlines()[-probe_lines:]
    for line in head + tail:
        try:
            ts = orjson.loads(line)["ts"]
            if isinstance(ts, int | float) and np.isfinite(ts):
                stamps.append(float(ts))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return (min(stamps), max(stamps)) if stamps else None


# --- per-line extraction: the hot loop (10M lines), so one flat loop per kind, no calls per field --

NAN = float("nan")


def _chat_rows(
    lines: list[bytes], intern: dict[tuple[Any, ...], int], bad: Callable[[int, Exception], None], plan: Plan
) -> _Block:
    """Columns of chat lines; the category is (status, error_class, explanation_state, chaos, late,
    good): ``good`` is hif.harness.goodput's definition, inlined because this loop runs per line.
    A streamed chat (record v2, ``stream`` true) adds its TTFT, intended TTFT and TPOT."""
    block = _Block()
    ts_add, a_add, b_add, cat_add = block.ts.append, block.a.append, block.b.append, block.cat.append
    streamed: list[tuple[int, float, float, float]] = []
    loads = orjson.loads
    chat_ms, good_traces = plan.goodput.chat_ms, plan.good_traces
    for i, line in enumerate(lines):
        try:
            r = loads(line)
            ts = r["ts"]
            if ts is None:  # a dropped request was never sent: it belongs at its intended start
                ts = r["intended_ts"]
            ts = float(ts)
            if not isfinite(ts):
                raise ValueError("ts is not finite")
            a, b, chaos = r.get("latency_ms"), r.get("intended_latency_ms"), r.get("chaos")
            a = NAN if a is None else float(a)  # no latency (no answer): NaN, masked out later
            b = NAN if b is None else float(b)
            status, error_class = int(r["status"]), r.get("error_class")
            good = 200 <= status < 300 and error_class is None and a <= chat_ms
            if good and r.get("attached"):
                tid = r.get("trace_id")
                good = tid is not None and trace_key(tid) in good_traces
            cat = (status, error_class, r.get("explanation_state"),
                   tuple(chaos) if chaos else (), r.get("late") is True, good)  # fmt: skip
            cid = intern.get(cat)
            if cid is None:
                cid = intern[cat] = len(intern)
            if r.get("stream") is True:
                streamed.append((len(block.ts), _ms(r.get("ttft_ms")), _ms(r.get("intended_ttft_ms")),
                                 _ms(r.get("tpot_ms"))))  # fmt: skip
        except Exception as exc:  # a corrupt line: anything that is not a valid record
            bad(i, exc)
            continue
        ts_add(ts)
        a_add(a)
        b_add(b)
        cat_add(cid)
    block.streamed = streamed
    return block


def _ms(v: Any) -> float:
    return NAN if v is None else float(v)


def _explanation_rows(
    lines: list[bytes],
    intern: dict[tuple[Any, ...], int],
    bad: Callable[[int, Exception], None],
    plan: Plan,
    good_traces: set[int],
) -> tuple[_Block, int]:
    """Columns of explanation lines; the category is (state, granularity, chaos). Also the polls,
    and the keys of traces that were good (complete within their granularity's goodput target)."""
    block, polls = _Block(), 0
    loads = orjson.loads
    targets = plan.goodput
    for i, line in enumerate(lines):
        try:
            r = loads(line)
            ts = float(r["ts"])
            if not isfinite(ts):
                raise ValueError("ts is not finite")
            a, b, chaos, n = r.get("sla_ms"), r.get("sla_bound_ms"), r.get("chaos"), r.get("polls")
            a = NAN if a is None else float(a)
            b = NAN if b is None else float(b)
            cat = (str(r["state"]), str(r.get("granularity") or "sentence"), tuple(chaos) if chaos else ())
            tid = r.get("trace_id")
            if tid is not None and cat[0] == "complete" and a <= targets.for_granularity(cat[1]):
                good_traces.add(trace_key(tid))
            cid = intern.get(cat)
            if cid is None:
                cid = intern[cat] = len(intern)
        except Exception as exc:
            bad(i, exc)
            continue
        if isinstance(n, int):
            polls += n
        block.ts.append(ts)
        block.a.append(a)
        block.b.append(b)
        block.cat.append(cid)
    return block, polls


class _Block:
    """Columns of one block of lines, with categories interned to small ints."""

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.a: list[float] = []
        self.b: list[float] = []
        self.cat: list[int] = []
        # streamed chats: (row, ttft_ms, intended_ttft_ms, tpot_ms), NaN where the stream had none
        self.streamed: list[tuple[int, float, float, float]] = []


class _Scanner:
    def __init__(self, kind: str, plan: Plan, out: Partial, path: str) -> None:
        self.kind, self.plan, self.out, self.path = kind, plan, out, path
        self.bounds = np.asarray(plan.boundaries, dtype=np.float64)
        self.intern: dict[tuple[Any, ...], int] = {}
        self.cat_counts: dict[int, int] = {}  # packed (cell, cat id) -> n, decoded at the end

    def feed(self, lines: list[bytes], base_offset: int) -> None:
        def bad(i: int, exc: Exception) -> None:
            if lines[i].strip():  # blank lines are not records
                self._corrupt(lines, i, base_offset, exc)

        if self.kind == CHAT:
            block = _chat_rows(lines, self.intern, bad, self.plan)
        else:
            block, polls = _explanation_rows(lines, self.intern, bad, self.plan, self.out.good_traces)
            self.out.polls += polls
        self.out.lines[self.kind] += len(block.ts)
        if block.ts:
            self._fold(block)

    def _corrupt(self, lines: list[bytes], i: int, base_offset: int, exc: Exception) -> None:
        self.out.corrupt[self.kind] += 1
        if len(self.out.examples) < MAX_EXAMPLES:
            offset = base_offset + sum(len(x) for x in lines[:i])
            reason = f"{type(exc).__name__}: {exc}"[:120]
            self.out.examples.append({"file": self.path, "byte_offset": offset, "reason": reason})

    def _fold(self, block: _Block) -> None:
        ts = np.asarray(block.ts, dtype=np.float64)
        cat = np.asarray(block.cat, dtype=np.int64)
        self.out.t_min = min(self.out.t_min, float(ts.min()))
        self.out.t_max = max(self.out.t_max, float(ts.max()))
        tb = np.clip(np.floor((ts - self.plan.t0) / self.plan.bucket_s), 1 - _TB_OFFSET, _TB_OFFSET - 1)
        seg = np.searchsorted(self.bounds, ts, side="right")
        cell = (tb.astype(np.int64) + _TB_OFFSET) * _SEG_SPAN + seg
        tb = tb.astype(np.int64)
        keys, counts = np.unique(cell * _CAT_SPAN + cat, return_counts=True)
        for k, n in zip(keys.tolist(), counts.tolist(), strict=True):
            self.cat_counts[k] = self.cat_counts.get(k, 0) + n
        cats = list(self.intern)
        a, b = np.asarray(block.a, dtype=np.float64), np.asarray(block.b, dtype=np.float64)
        tb_i, seg_i = tb, seg.astype(np.int64)
        if self.kind == CHAT:
            # every answered request, errors and timeouts included, as summary.json counts them;
            # dropped requests (never sent) have no latency and stay out
            answered = np.ones(len(block.ts), dtype=bool)
            self._hists(tb_i, seg_i, a, answered, "service")
            self._hists(tb_i, seg_i, b, answered, "intended")
            if block.streamed:
                cols = np.asarray(block.streamed, dtype=np.float64)
                rows = cols[:, 0].astype(np.int64)
                every = np.ones(len(rows), dtype=bool)
                for j, label in enumerate(STREAM_LABELS, start=1):
                    self._hists(tb_i[rows], seg_i[rows], cols[:, j], every, label)
            return
        # the series places an SLA where the trace reached its terminal state (answer + sla_ms),
        # so a slowdown shows when it happened, not at the earlier chat answer; chaos-window parts
        # (segments) stay by answer time, like the counts they sit beside
        done = ts + np.nan_to_num(a, nan=0.0) / 1000.0
        tb_i = np.clip(np.floor((done - self.plan.t0) / self.plan.bucket_s), 1 - _TB_OFFSET, _TB_OFFSET - 1)
        tb_i = tb_i.astype(np.int64)
        complete = np.asarray([c[0] == "complete" for c in cats], dtype=bool)[cat]
        names = sorted({c[1] for c in cats})
        gran = np.asarray([names.index(c[1]) for c in cats], dtype=np.int64)[cat]
        for i, name in enumerate(names):
            self._hists(tb_i, seg_i, a, complete & (gran == i), name)
            self._bound(b[(gran == i) & ~np.isnan(b)], name)

    def _hists(
        self, tb: np.ndarray, seg: np.ndarray, values_ms: np.ndarray, mask: np.ndarray, label: str
    ) -> None:
        mask = mask & ~np.isnan(values_ms)
        if not mask.any():
            return
        us = to_us(values_ms[mask])
        _fold_hist(self.out.seg_hist, self.kind, label, seg[mask], quantize_us(us, 3))
        _fold_hist(self.out.tb_hist, self.kind, label, tb[mask], quantize_us(us, 2))

    def _bound(self, values_ms: np.ndarray, name: str) -> None:
        if values_ms.size == 0:
            return
        keys, counts = np.unique(quantize_us(to_us(values_ms)), return_counts=True)
        _add_counts(
            self.out.bound_hist.setdefault(name, {}), dict(zip(keys.tolist(), counts.tolist(), strict=True))
        )

    def finish(self) -> None:
        """Decode packed keys into (tb, seg, ...) tuples in the Partial."""
        cats = list(self.intern)
        counts = self.out.chat_counts if self.kind == CHAT else self.out.expl_counts
        for k, n in self.cat_counts.items():
            tb, seg = _unpack_cell(k // _CAT_SPAN)
            key = (tb, seg, cats[k % _CAT_SPAN])
            counts[key] = counts.get(key, 0) + n


def _fold_hist(
    into: dict[tuple[str, int, str], dict[int, int]], kind: str, label: str, keys: np.ndarray, q: np.ndarray
) -> None:
    """Add (key, HDR bucket) pairs to ``into[(kind, key, label)]``; one numpy unique per block."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    packed, counts = np.unique((inverse.astype(np.int64) << 32) | q, return_counts=True)
    key_list = uniq.tolist()
    for k, n in zip(packed.tolist(), counts.tolist(), strict=True):
        h = into.setdefault((kind, key_list[k >> 32], label), {})
        b = k & 0xFFFFFFFF
        h[b] = h.get(b, 0) + n


def _unpack_cell(cell: int) -> Cell:
    return cell // _SEG_SPAN - _TB_OFFSET, cell % _SEG_SPAN


def _blocks(path: Path, start: int, end: int) -> Iterator[tuple[list[bytes], int]]:
    """Whole lines of ``[start, end)`` in blocks; ``readlines(hint)`` may read one line past the
    hint, so the last block is cut back at ``end`` (the next range's first line)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        pos = start
        while pos < end:
            lines = fh.readlines(min(BLOCK_BYTES, end - pos))
            size = sum(map(len, lines))
            if pos + size > end:
                keep, size = [], 0
                for line in lines:
                    if pos + size + len(line) > end:
                        break
                    keep.append(line)
                    size += len(line)
                lines = keep
            if not lines:
                return
            yield lines, pos
            pos += size


def scan_range(kind: str, path: str, start: int, end: int, plan: Plan) -> Partial:
    """Aggregate the lines in ``[start, end)`` of one file (a worker's unit of work)."""
    out = Partial()
    scanner = _Scanner(kind, plan, out, path)
    for lines, offset in _blocks(Path(path), start, end):
        scanner.feed(lines, offset)
    scanner.finish()
    return out


def _scan_task(task: tuple[str, str, int, int, Plan]) -> Partial:
    return scan_range(*task)


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
