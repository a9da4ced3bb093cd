"""Sparse HDR histograms for the report: HdrHistogram's buckets and percentile rule, without its array.

The report builds thousands of small histograms (one per time bucket, chaos window and group), so
it keeps only the non-empty HDR buckets in a dict ``{lowest equivalent value: count}``. Values are
integer microseconds in an HdrHistogram of 1 us .. 1 h at 3 significant digits; a value lands in
the same bucket as ``HdrHistogram.record_value`` would put it, and :meth:`SparseHist.percentile`
follows ``HdrHistogram.get_value_at_percentile`` exactly (tests check both against hdrh). Adding
counts is exact, so merged shards give the same percentiles as one combined run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from hdrh.histogram import HdrHistogram

from hif.harness.records import ReportPercentiles
from hif.harness.stats import LatencyHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES = 3
# Sub-bucket bits per precision, as HdrHistogram derives them: 3 significant figures -> 2048
# sub-buckets (values below 2048 us exact, then better than 0.1 %); 2 -> 256 (better than 1 %),
# used for the per-time-bucket series where thousands of histograms would otherwise pile up.
_SUB_BUCKET_BITS = {3: 11, 2: 8}


def to_us(values_ms: np.ndarray) -> np.ndarray:
    """Milliseconds to integer microseconds, rounding half up as ``stats.LatencyHistogram.record`` does."""
    return np.floor(values_ms * 1000.0 + 0.5)


def quantize_us(values_us: np.ndarray, figures: int = SIGNIFICANT_FIGURES) -> np.ndarray:
    """The HDR bucket (its lowest equivalent value) of each int64 microsecond value, vectorized."""
    v = np.clip(values_us, 0, HIGHEST_US).astype(np.int64)
    _, exponent = np.frexp(v.astype(np.float64))  # exponent == bit_length for positive ints
    shift = np.maximum(exponent.astype(np.int64) - _SUB_BUCKET_BITS[figures], 0)
    return (v >> shift) << shift


def quantize_one(value_us: int, figures: int = SIGNIFICANT_FIGURES) -> int:
    v = min(max(int(value_us), 0), HIGHEST_US)
    shift = max(v.bit_length() - _SUB_BUCKET_BITS[figures], 0)
    return (v >> shift) << shift


def _highest_equivalent(lowest: int, figures: int) -> int:
    shift = max(lowest.bit_length() - _SUB_BUCKET_BITS[figures], 0)
    return lowest + (1 << shift) - 1


class SparseHist:
    """Counts per HDR bucket; mergeable with ``+=``; percentiles in milliseconds."""

    __slots__ = ("counts", "figures")

    def __init__(
        self, counts: Mapping[int, int] | None = None, *, figures: int = SIGNIFICANT_FIGURES
    ) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.figures = figures

    @classmethod
    def of_ms(cls, values_ms: Iterable[float], *, figures: int = SIGNIFICANT_FIGURES) -> SparseHist:
        h = cls(figures=figures)
        for v in values_ms:
            h.add(quantize_one(int(v * 1000.0 + 0.5), figures))
        return h

    def add(self, bucket_us: int, count: int = 1) -> None:
        self.counts[bucket_us] = self.counts.get(bucket_us, 0) + count

    def __iadd__(self, other: SparseHist) -> SparseHist:
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentiles_ms(self, pcts: Iterable[float]) -> dict[float, float | None]:
        """HDR's rule: the highest equivalent value of the bucket holding the target count."""
        pcts = list(pcts)
        total = self.total
        if total == 0:
            return {p: None for p in pcts}
        keys = sorted(self.counts)
        cum = np.cumsum([self.counts[k] for k in keys])
        out: dict[float, float | None] = {}
        for p in pcts:
            target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
            idx = int(np.searchsorted(cum, target, side="left"))
            key = keys[min(idx, len(keys) - 1)]
            value = _highest_equivalent(key, self.figures) if p else key
            out[p] = value / 1000.0
        return out

    def percentile_ms(self, pct: float) -> float | None:
        return self.percentiles_ms([pct])[pct]

    def summary(self) -> ReportPercentiles:
        """count, p50/p95/p99 and max (all in ms) for report.json."""
        p = self.percentiles_ms([50.0, 95.0, 99.0, 100.0])
        return {
            "count": self.total,
            "p50_ms": p[50.0],
            "p95_ms": p[95.0],
            "p99_ms": p[99.0],
            "max_ms": p[100.0],
        }

    def to_hdr(self) -> HdrHistogram:
        """The same counts in a real HdrHistogram (for its encoder and the cross-check in tests)."""
        h = HdrHistogram(LOWEST_US, HIGHEST_US, self.figures)
        for k, c in self.counts.items():
            h.record_value(k, c)
        return h


def finite(x: object) -> float | None:
    """A JSON number as float, or None for null/NaN/inf/non-numbers (records may hold anything)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def to_latency_histogram(h: SparseHist) -> LatencyHistogram:
    """The same counts as H4's :class:`~hif.harness.stats.LatencyHistogram` (3 figures only)."""
    if h.figures != SIGNIFICANT_FIGURES:
        raise ValueError("only 3-significant-figure histograms share stats.LatencyHistogram's layout")
    out = LatencyHistogram()
    for bucket_us, count in h.counts.items():
        out.record(bucket_us / 1000.0, count)
    return out


def from_latency_histogram(h: LatencyHistogram) -> SparseHist:
    """The inverse of :func:`to_latency_histogram`: an hlog interval's counts as a SparseHist.

    Both use HdrHistogram's 3-figure layout over 1 us .. 1 h, so each non-empty index maps to its
    lowest equivalent value, the key :func:`quantize_one` gives, and the percentiles agree. The
    index -> value rule is hdrh's ``get_value_from_index``, vectorised: a long soak's report reads
    tens of thousands of intervals.
    """
    hdr = h.hdr
    counts = np.frombuffer(hdr.counts, dtype=np.int64 if hdr.word_size == 8 else np.int32)
    index = np.flatnonzero(counts)
    half_bits, half = hdr.sub_bucket_half_count_magnitude, hdr.sub_bucket_half_count
    bucket = (index >> half_bits) - 1
    sub = (index & (half - 1)) + half
    sub = np.where(bucket < 0, sub - half, sub)
    values = sub << (np.maximum(bucket, 0) + hdr.unit_magnitude)
    return SparseHist(dict(zip(values.tolist(), counts[index].tolist(), strict=True)))
