"""SparseHist must agree with HdrHistogram (and stats.LatencyHistogram) bucket for bucket."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from hif.harness.report.hist import (
    SparseHist,
    from_latency_histogram,
    quantize_one,
    quantize_us,
    to_latency_histogram,
    to_us,
)
from hif.harness.stats import LatencyHistogram

PCTS = (0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0)


def _values(seed: int, n: int = 5000) -> list[float]:
    rng = random.Random(seed)
    # ms: sub-millisecond to tens of seconds, plus exact-half rounding edges
    return [rng.lognormvariate(3.0, 2.0) for _ in range(n)] + [1.0005, 2.0485, 0.0, 0.0004]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_equal_latency_histogram(seed: int) -> None:
    values = _values(seed)
    ours = SparseHist.of_ms(values)
    theirs = LatencyHistogram()
    for v in values:
        theirs.record(v)
    assert ours.total == theirs.count
    for p, v in ours.percentiles_ms(PCTS).items():
        assert v == pytest.approx(theirs.percentile(p), abs=1e-9), p


def test_vectorized_quantization_matches_hdr_buckets() -> None:
    values = np.asarray(_values(4), dtype=np.float64)
    q = quantize_us(to_us(values))
    h = HdrHistogram(1, 3_600_000_000, 3)
    for v in values:
        us = int(v * 1000.0 + 0.5)
        h.record_value(us)
        assert h.get_lowest_equivalent_value(us) == quantize_one(us)
    assert set(q.tolist()) == {int(h.get_lowest_equivalent_value(int(v * 1000.0 + 0.5))) for v in values}


def test_two_figure_histograms_match_hdr_with_two_figures() -> None:
    values = _values(5)
    ours = SparseHist.of_ms(values, figures=2)
    theirs = HdrHistogram(1, 3_600_000_000, 2)
    for v in values:
        theirs.record_value(int(v * 1000.0 + 0.5))
    for p, v in ours.percentiles_ms(PCTS).items():
        assert v == pytest.approx(theirs.get_value_at_percentile(p) / 1000.0), p


def test_merge_is_exact_and_empty_is_none() -> None:
    a, b = _values(6, 300), _values(7, 400)
    merged = SparseHist.of_ms(a)
    merged += SparseHist.of_ms(b)
    assert merged.counts == SparseHist.of_ms(a + b).counts
    assert SparseHist().summary() == {
        "count": 0,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "max_ms": None,
    }


def test_small_values_are_exact() -> None:
    h = SparseHist.of_ms([i / 10 for i in range(1, 21)])  # 0.1 .. 2.0 ms: below 2048 us, 1 us buckets
    assert h.summary() == {"count": 20, "p50_ms": 1.0, "p95_ms": 1.9, "p99_ms": 2.0, "max_ms": 2.0}
    assert h.to_hdr().get_value_at_percentile(95) == 1900


def test_conversion_to_stats_latency_histogram_is_lossless() -> None:
    values = _values(8, 2000)
    direct = LatencyHistogram()
    for v in values:
        direct.record(v)
    converted = to_latency_histogram(SparseHist.of_ms(values))
    assert converted.count == direct.count
    assert LatencyHistogram.decode(converted.encode()).summary() == direct.summary()
    with pytest.raises(ValueError, match="3-significant-figure"):
        to_latency_histogram(SparseHist(figures=2))


def test_an_hlog_interval_reads_back_as_the_same_sparse_histogram() -> None:
    values = _values(9, 2000)
    direct = LatencyHistogram()
    for v in values:
        direct.record(v)
    back = from_latency_histogram(LatencyHistogram.decode(direct.encode()))  # as an hlog line holds it
    assert back.total == direct.count
    assert all(quantize_one(k) == k for k in back.counts)  # keys are buckets' lowest values
    assert to_latency_histogram(back).summary() == direct.summary()
    assert back.percentiles_ms(PCTS) == pytest.approx({p: direct.percentile(p) for p in PCTS})
    assert from_latency_histogram(LatencyHistogram()).total == 0
