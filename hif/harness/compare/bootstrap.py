"""Block bootstrap over time intervals: confidence intervals that respect correlated samples.

Requests close in time share a server state (a queue, a GC pause, a warm cache), so treating every
request as an independent sample makes a run look far more precise than it is. Here the unit of
resampling is a time block (an interval of the HDR log, or a bucket of summary.json): a bootstrap
draw picks blocks with replacement and merges their histograms, so whatever correlation lives
inside a block travels with it.

>>> import numpy as np
>>> a = Blocks.from_rows([{10: 5}, {10: 4, 20: 1}], values={10: 1.0, 20: 2.0})
>>> a.percentile(50)
1.0
>>> draws = a.percentile_draws(50, np.random.default_rng(0), 100)
>>> float(draws.min()), float(draws.max())
(1.0, 1.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DRAWS = 2000
CONFIDENCE = 0.95
MAX_BLOCKS = 200  # more blocks than this are merged into consecutive groups (soaks: hours of 1 s blocks)


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Histogram counts per block (rows) over a shared set of bins (columns, ascending values)."""

    counts: Any  # int64 array, blocks x bins
    values: Any  # float64 array, the value each bin stands for (ms)

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[int, int]], values: Mapping[int, float]) -> Blocks:
        """Rows of ``{bin index: count}`` and each index's value -> dense arrays over the used bins."""
        used = sorted({i for row in rows for i in row}, key=lambda i: values[i])
        col = {i: c for c, i in enumerate(used)}
        counts = np.zeros((len(rows), len(used)), dtype=np.int64)
        for r, row in enumerate(rows):
            for i, n in row.items():
                counts[r, col[i]] += n
        return cls(_group(counts), np.array([values[i] for i in used], dtype=np.float64))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile(self, p: float) -> float | None:
        """HdrHistogram's rule: the smallest value with at least ``p``% of the counts at or below it."""
        out = _percentiles(self.counts.sum(axis=0, keepdims=True), self.values, p)
        return None if out is None else float(out[0])

    def percentile_draws(self, p: float, rng: np.random.Generator, draws: int = DRAWS) -> Any:
        weights = _weights(len(self.counts), rng, draws)
        return _percentiles(weights @ self.counts, self.values, p)


@dataclasses.dataclass(frozen=True)
class Ratios:
    """A numerator and a denominator per block (errors / requests, good chats / seconds...)."""

    num: Any
    den: Any

    @classmethod
    def of(cls, num: Sequence[float], den: Sequence[float]) -> Ratios:
        n, d = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
        return cls(_group(n[:, None])[:, 0], _group(d[:, None])[:, 0])

    @property
    def total(self) -> float:
        return float(self.den.sum())

    def value(self) -> float | None:
        den = float(self.den.sum())
        return float(self.num.sum()) / den if den else None

    def draws(self, rng: np.random.Generator, draws: int = DRAWS) -> Any:
        weights = _weights(len(self.num), rng, draws)
        den = weights @ self.den
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (weights @ self.num) / np.where(den > 0, den, 1.0), np.nan)


def difference_interval(
    a_draws: Any, b_draws: Any, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """Percentile interval of ``b - a`` over paired independent draws (NaN draws dropped)."""
    diff = np.asarray(b_draws, dtype=np.float64) - np.asarray(a_draws, dtype=np.float64)
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(diff, [tail, 100.0 - tail])
    return float(low), float(high)


def _weights(blocks: int, rng: np.random.Generator, draws: int) -> Any:
    """How often each block is picked in each draw (draws x blocks): a multinomial resample."""
    if blocks == 0:
        return np.zeros((draws, 0), dtype=np.int64)
    return rng.multinomial(blocks, np.full(blocks, 1.0 / blocks), size=draws)


def _percentiles(counts: Any, values: Any, p: float) -> Any:
    totals = counts.sum(axis=1)
    if not counts.shape[1] or not totals.any():
        return None
    # hdrh's get_target_count_at_percentile: the count the p-th value needs, at least 1
    target = np.maximum(np.floor(p / 100.0 * totals + 0.5), 1)
    cum = np.cumsum(counts, axis=1)
    index = (cum < target[:, None]).sum(axis=1)
    out = values[np.minimum(index, len(values) - 1)]
    return np.where(totals > 0, out, np.nan)


def _group(rows: Any) -> Any:
    """At most MAX_BLOCKS rows: consecutive rows summed (longer blocks keep more correlation inside)."""
    n = len(rows)
    if n <= MAX_BLOCKS:
        return rows
    edges = np.linspace(0, n, MAX_BLOCKS + 1).astype(int)
    return np.add.reduceat(rows, edges[:-1], axis=0)
