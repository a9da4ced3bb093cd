"""HDR histograms for latencies in milliseconds, and an interval log for exact re-aggregation.

Latencies are recorded as integer microseconds inside an HdrHistogram (1 us .. 1 h, 3 significant
figures), so percentiles are exact to 0.1% and histograms from several processes, shards or time
windows merge exactly (counts add) instead of averaging percentiles.

>>> h = LatencyHistogram()
>>> for ms in (1.0, 2.0, 3.0, 100.0):
...     h.record(ms)
>>> h.count, round(h.percentile(50), 1), round(h.max, 1)
(4, 2.0, 100.0)
>>> LatencyHistogram.decode(h.encode()).count
4

The interval log (``histograms.hlog``) is HdrHistogram's standard log format with tags: one line
per (tag, interval) ``Tag=<tag>,<start_s>,<length_s>,<max>,<base64 histogram>`` with absolute
Unix-second start times. ``IntervalRecorder`` produces the intervals; ``write_intervals`` appends
them; ``read_intervals`` / ``merge_window`` read any window back, from one file or several.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from hdrh.histogram import HdrHistogram

try:  # numpy (pulled in by the `load` extra through matplotlib) makes reads and batches fast
    import numpy as _np
except ImportError:  # pragma: no cover - the pure-hdrh path gives the same numbers, slower
    _np = None  # type: ignore[assignment]

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything slower is clamped (and still counted)
SIGNIFICANT_FIGURES = 3
DEFAULT_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
FLUSH_EVERY = 4096  # pending values folded into the histogram in one vectorised batch


class LatencyHistogram:
    """A latency histogram in milliseconds over an HdrHistogram of microseconds.

    ``record`` only appends to a list (the generator's hot path); values are folded into the
    HdrHistogram in vectorised batches (numpy, when installed) on the next read. Percentiles and
    the mean use one cumulative sum over the counts instead of hdrh's per-index Python loop,
    with hdrh's exact rules (same results, ~1000x faster).
    """

    __slots__ = ("_h", "_pending")

    def __init__(self, _hist: HdrHistogram | None = None) -> None:
        self._h = _hist or HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        self._pending: list[float] = []

    def record(self, ms: float, count: int = 1) -> None:
        """Record one latency (negative values count as 0, values above an hour are clamped)."""
        if count == 1:
            self._pending.append(ms)
            if len(self._pending) >= FLUSH_EVERY:
                self._flush()
        else:
            self._flush()
            self._h.record_value(_to_us(ms), count)

    def _flush(self) -> None:
        # The pending list is emptied in place, never replaced: the generator may hold its
        # ``append`` (see IntervalRecorder.appender).
        values = self._pending
        if not values:
            return
        if _np is None:
            for ms in values:
                self._h.record_value(_to_us(ms))
            values.clear()
            return
        array = _np.asarray(values, dtype=_np.float64)
        values.clear()
        us = _np.clip(_np.rint(array * 1000.0), 0, HIGHEST_US).astype(_np.int64)
        counts = _counts(self._h)
        counts += _np.bincount(_indices(self._h, us), minlength=len(counts))[: len(counts)].astype(
            counts.dtype
        )
        h = self._h
        h.total_count += len(us)
        h.min_value = min(h.min_value, int(us.min()))
        h.max_value = max(h.max_value, int(us.max()))

    @property
    def hdr(self) -> HdrHistogram:
        """The underlying hdrh histogram (microseconds), with every recorded value folded in."""
        self._flush()
        return self._h

    @property
    def count(self) -> int:
        return int(self.hdr.get_total_count())

    def percentile(self, p: float) -> float:
        """The value at percentile ``p`` (0..100) in ms; 0.0 when empty."""
        return self.percentiles([p])[0]

    def percentiles(self, ps: Iterable[float]) -> list[float]:
        h = self.hdr
        ps = list(ps)
        if not h.total_count:
            return [0.0 for _ in ps]
        if _np is None:
            return [float(h.get_value_at_percentile(p)) / 1000.0 for p in ps]
        cum = _np.cumsum(_counts(h))
        out = []
        for p in ps:
            index = int(_np.searchsorted(cum, h.get_target_count_at_percentile(p), side="left"))
            value = h.get_value_from_index(index)
            value = h.get_highest_equivalent_value(value) if p else h.get_lowest_equivalent_value(value)
            out.append(float(value) / 1000.0)
        return out

    @property
    def mean(self) -> float:
        h = self.hdr
        if not h.total_count:
            return 0.0
        if _np is None:
            return float(h.get_mean_value()) / 1000.0
        return float(_np.dot(_counts(h).astype(_np.float64), _medians(h))) / h.total_count / 1000.0

    @property
    def max(self) -> float:
        h = self.hdr
        return float(h.get_highest_equivalent_value(h.get_max_value())) / 1000.0 if h.total_count else 0.0

    @property
    def min(self) -> float:
        return float(self.hdr.get_min_value()) / 1000.0 if self.count else 0.0

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other``'s counts into this histogram (exact); returns self."""
        if other.count:
            self.hdr.add(other.hdr)
        return self

    def copy(self) -> LatencyHistogram:
        return LatencyHistogram().merge(self)

    def encode(self) -> str:
        """Compressed base64 text (HdrHistogram V2 encoding), safe for JSON and log lines."""
        return bytes(self.hdr.encode()).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        """The inverse of :meth:`encode`; the result is re-bucketed to this module's layout."""
        decoded = HdrHistogram.decode(text.encode("ascii"))
        return cls().merge(cls(decoded)) if decoded.get_total_count() else cls()

    def summary(self, percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> dict[str, float]:
        """``{"count", "mean_ms", "max_ms", "p50_ms", ...}`` rounded to 0.001 ms."""
        ps = list(percentiles)
        out: dict[str, float] = {
            "count": self.count,
            "mean_ms": round(self.mean, 3),
            "max_ms": round(self.max, 3),
        }
        for p, v in zip(ps, self.percentiles(ps), strict=True):
            out[f"p{p:g}_ms".replace(".", "_")] = round(v, 3)
        return out

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count}, p50={self.percentile(50):.3f}ms, max={self.max:.3f}ms)"


def _to_us(ms: float) -> int:
    return min(max(int(ms * 1000.0 + 0.5), 0), HIGHEST_US)


def _counts(h: HdrHistogram) -> Any:
    """The counts array as a numpy view (no copy): hdrh keeps it in a ctypes array."""
    assert _np is not None
    return _np.frombuffer(h.counts, dtype=_np.int64 if h.word_size == 8 else _np.int32)


def _indices(h: HdrHistogram, us: Any) -> Any:
    """hdrh's ``_counts_index_for`` vectorised (bucket from the bit length, then sub-bucket)."""
    assert _np is not None
    bits = _np.frexp((us | h.sub_bucket_mask).astype(_np.float64))[1].astype(_np.int64)  # bit_length
    bucket = bits - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub = us >> (bucket + h.unit_magnitude)
    return ((bucket + 1) << h.sub_bucket_half_count_magnitude) + (sub - h.sub_bucket_half_count)


_MEDIANS: dict[tuple[int, int, int], Any] = {}


def _medians(h: HdrHistogram) -> Any:
    """Each index's median equivalent value (hdrh's mean rule), computed once per layout."""
    assert _np is not None
    key = (h.counts_len, h.unit_magnitude, h.sub_bucket_half_count_magnitude)
    if key not in _MEDIANS:
        index = _np.arange(h.counts_len, dtype=_np.int64)
        bucket = (index >> h.sub_bucket_half_count_magnitude) - 1
        sub = (index & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
        low = bucket < 0
        sub = _np.where(low, sub - h.sub_bucket_half_count, sub)
        bucket = _np.where(low, 0, bucket)
        value = sub << (bucket + h.unit_magnitude)
        size = _np.left_shift(1, h.unit_magnitude + bucket)
        _MEDIANS[key] = (value + (size >> 1)).astype(_np.float64)
    return _MEDIANS[key]


def merged(histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
    out = LatencyHistogram()
    for h in histograms:
        out.merge(h)
    return out


# --- intervals -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Interval:
    """One tagged histogram covering ``[start_s, end_s)`` (Unix seconds)."""

    tag: str
    start_s: float
    end_s: float
    histogram: LatencyHistogram


class IntervalRecorder:
    """Tagged histograms for the current interval, plus running totals per tag.

    The hot path calls :meth:`record`; a periodic task calls :meth:`rotate` which hands back the
    finished (non-empty) intervals for the log and starts new ones. Totals never reset.
    """

    def __init__(self, start_s: float) -> None:
        self._start_s = start_s
        self._current: dict[str, LatencyHistogram] = {}
        self.totals: dict[str, LatencyHistogram] = {}

    def record(self, tag: str, ms: float) -> None:
        # The generator's hot path: one list append. ``rotate`` (once per bucket) bounds the list.
        try:
            self._current[tag]._pending.append(ms)
        except KeyError:
            self._current[tag] = LatencyHistogram()
            self._current[tag].record(ms)

    def appender(self, tag: str) -> Callable[[float], None]:
        """The hot path's way in: a bound ``append`` for ``tag``'s current interval.

        It saves :meth:`record`'s call and lookup per value (measured in bench/hotpath.py); it is
        valid until the next :meth:`rotate`, after which the caller asks again. :meth:`fold`
        keeps the pending values bounded between rotations.
        """
        h = self._current.get(tag)
        if h is None:
            h = self._current[tag] = LatencyHistogram()
        return h._pending.append

    def record_count(self, tag: str, ms: float, count: int) -> None:
        """``count`` equal values at once (the streamed runner's zero gaps of one read)."""
        h = self._current.get(tag)
        if h is None:
            h = self._current[tag] = LatencyHistogram()
        h.record(ms, count)

    def pending(self, tag: str) -> list[float]:
        """:meth:`appender`'s list itself, for recording many values with one ``extend`` (the
        streamed runner's per-token gaps); the same validity rule applies."""
        h = self._current.get(tag)
        if h is None:
            h = self._current[tag] = LatencyHistogram()
        return h._pending

    def fold(self) -> None:
        """Fold long pending lists into their histograms (a ticker calls this; cheap when short)."""
        for h in self._current.values():
            if len(h._pending) >= FLUSH_EVERY:
                h._flush()

    def rotate(self, now_s: float) -> list[Interval]:
        out = [Interval(tag, self._start_s, now_s, h) for tag, h in sorted(self._current.items()) if h.count]
        for iv in out:
            self.totals.setdefault(iv.tag, LatencyHistogram()).merge(iv.histogram)
        self._current = {}
        self._start_s = now_s
        return out

    def total(self, tag: str) -> LatencyHistogram:
        """Finished intervals plus the current one, for ``tag``."""
        h = self.totals.get(tag, LatencyHistogram()).copy()
        cur = self._current.get(tag)
        return h.merge(cur) if cur is not None else h


LOG_HEADER = (
    "#[Histogram log format version 1.3]\n"
    "#[BaseTime: 0.000 (seconds since epoch)]\n"
    '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
)


def write_intervals(fh: IO[str], intervals: Iterable[Interval]) -> None:
    """Append tagged interval lines (max in ms; values inside the histogram are microseconds)."""
    for iv in intervals:
        fh.write(
            f"Tag={iv.tag},{iv.start_s:.3f},{iv.end_s - iv.start_s:.3f},"
            f"{iv.histogram.max:.3f},{iv.histogram.encode()}\n"
        )


def read_intervals(path: Path, tags: Collection[str] | None = None) -> Iterator[Interval]:
    """Every tagged interval of an hlog file; comment, legend and corrupt lines are skipped.

    With ``tags``, only those tags' lines are decoded (decoding is most of a read's cost)."""
    prefixes = None if tags is None else tuple(f"Tag={t}," for t in tags)
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if prefixes is not None and not line.startswith(prefixes):
                continue
            iv = _parse_line(line)
            if iv is not None:
                yield iv


def _parse_line(line: str) -> Interval | None:
    if not line.startswith("Tag="):
        return None
    parts = line.rstrip("\n").split(",", 4)
    if len(parts) != 5:
        return None
    try:
        start, length = float(parts[1]), float(parts[2])
        hist = LatencyHistogram.decode(parts[4])
    except Exception:  # a torn or corrupt line is skipped, not fatal: the rest stays exact
        return None
    return Interval(parts[0][4:], start, start + length, hist)


def merge_window(
    paths: Iterable[Path], tag: str, start_s: float = float("-inf"), end_s: float = float("inf")
) -> LatencyHistogram:
    """Exact histogram of ``tag`` over intervals starting within ``[start_s, end_s)``, over files."""
    out = LatencyHistogram()
    for path in paths:
        for iv in read_intervals(path, (tag,)):
            if start_s <= iv.start_s < end_s:
                out.merge(iv.histogram)
    return out
