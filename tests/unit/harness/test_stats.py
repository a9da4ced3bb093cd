"""HDR latency histograms and the tagged interval log: exact percentiles, exact merges, windows."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hif.harness.stats import (
    HIGHEST_US,
    LOG_HEADER,
    Interval,
    IntervalRecorder,
    LatencyHistogram,
    merge_window,
    merged,
    read_intervals,
    write_intervals,
)


def test_percentiles_are_within_hdr_precision() -> None:
    h = LatencyHistogram()
    for ms in range(1, 1001):
        h.record(float(ms))
    assert h.count == 1000
    assert h.percentile(50) == pytest.approx(500, rel=1e-3)
    assert h.percentile(99) == pytest.approx(990, rel=1e-3)
    assert h.max == pytest.approx(1000, rel=1e-3)
    assert h.min == pytest.approx(1, rel=1e-3)
    assert h.mean == pytest.approx(500.5, rel=1e-3)


def test_sub_millisecond_values_keep_microseconds() -> None:
    h = LatencyHistogram()
    h.record(0.25)
    assert h.percentile(50) == pytest.approx(0.25, abs=0.001)


def test_empty_histogram_reads_zero() -> None:
    h = LatencyHistogram()
    assert (h.count, h.percentile(95), h.mean, h.max) == (0, 0.0, 0.0, 0.0)
    assert h.summary()["count"] == 0


def test_out_of_range_values_are_clamped_and_counted() -> None:
    h = LatencyHistogram()
    h.record(-5.0)
    h.record(10 * HIGHEST_US / 1000.0)
    assert h.count == 2
    assert h.min == 0.0
    assert h.max == pytest.approx(HIGHEST_US / 1000.0, rel=1e-3)


def test_merge_equals_recording_everything_in_one() -> None:
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i in range(500):
        a.record(i * 0.7)
        both.record(i * 0.7)
    for i in range(300):
        b.record(100 + i * 3.1)
        both.record(100 + i * 3.1)
    m = merged([a, b])
    assert m.count == both.count
    for p in (1, 50, 90, 95, 99, 99.9, 100):
        assert m.percentile(p) == both.percentile(p)
    assert a.count == 500  # merged() does not mutate its inputs


def test_encode_decode_round_trip() -> None:
    h = LatencyHistogram()
    for ms in (0.5, 3.0, 3.0, 250.0, 7000.0):
        h.record(ms)
    text = h.encode()
    assert isinstance(text, str) and text.isascii()
    back = LatencyHistogram.decode(text)
    assert back.count == 5
    assert back.percentile(99) == h.percentile(99)
    assert LatencyHistogram.decode(LatencyHistogram().encode()).count == 0


def test_summary_names() -> None:
    h = LatencyHistogram()
    h.record(10.0)
    assert set(h.summary()) == {
        "count",
        "mean_ms",
        "max_ms",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "p99_9_ms",
    }


def test_interval_recorder_rotates_and_keeps_totals() -> None:
    r = IntervalRecorder(100.0)
    r.record("chat", 5.0)
    r.record("chat", 7.0)
    r.record("poll", 1.0)
    first = r.rotate(101.0)
    assert [(iv.tag, iv.start_s, iv.end_s, iv.histogram.count) for iv in first] == [
        ("chat", 100.0, 101.0, 2),
        ("poll", 100.0, 101.0, 1),
    ]
    r.record("chat", 9.0)
    assert r.total("chat").count == 3  # finished + current
    second = r.rotate(102.0)
    assert [(iv.tag, iv.start_s) for iv in second] == [("chat", 101.0)]
    assert r.rotate(103.0) == []  # empty intervals are not logged
    assert r.totals["chat"].count == 3


def test_interval_log_round_trip_and_windows(tmp_path: Path) -> None:
    path = tmp_path / "h.hlog"
    ivs = []
    for second in range(10):
        h = LatencyHistogram()
        h.record(float(second + 1))
        ivs.append(Interval("chat", 1000.0 + second, 1001.0 + second, h))
    ivs.append(Interval("poll", 1000.0, 1001.0, LatencyHistogram()))
    with open(path, "w") as fh:
        fh.write(LOG_HEADER)
        write_intervals(fh, ivs)
        fh.write("Tag=chat,1005.0,1.0,1.0,not-base64!!\n")  # a torn line is skipped
    back = [iv for iv in read_intervals(path) if iv.tag == "chat"]
    assert len(back) == 10
    assert back[3].start_s == pytest.approx(1003.0) and back[3].end_s == pytest.approx(1004.0)
    window = merge_window([path], "chat", 1002.0, 1005.0)  # seconds 2, 3, 4 -> values 3, 4, 5 ms
    assert window.count == 3
    assert window.max == pytest.approx(5.0, rel=1e-3)
    assert merge_window([path, path], "chat").count == 20  # several files add up


def test_write_intervals_line_format() -> None:
    h = LatencyHistogram()
    h.record(12.5)
    buf = io.StringIO()
    write_intervals(buf, [Interval("sla.token", 10.0, 11.5, h)])
    tag, start, length, max_ms, payload = buf.getvalue().strip().split(",", 4)
    assert (tag, start, length) == ("Tag=sla.token", "10.000", "1.500")
    assert float(max_ms) == pytest.approx(12.5, rel=1e-3)
    assert LatencyHistogram.decode(payload).count == 1


def test_batched_recording_and_fast_reads_match_hdrh_exactly() -> None:
    import random

    from hdrh.histogram import HdrHistogram

    rng = random.Random(5)
    values = [rng.lognormvariate(2.0, 1.5) for _ in range(20_000)] + [0.0, 0.0004, 3_599_999.0]
    fast = LatencyHistogram()
    ref = HdrHistogram(1, HIGHEST_US, 3)
    for ms in values:
        fast.record(ms)
        ref.record_value(int(ms * 1000.0 + 0.5))
    assert list(fast.hdr.counts) == list(ref.counts)
    assert fast.count == ref.get_total_count()
    for p in (0.0, 1.0, 50.0, 95.0, 99.0, 99.99, 100.0):
        assert fast.percentile(p) * 1000.0 == ref.get_value_at_percentile(p)
    assert fast.mean * 1000.0 == pytest.approx(ref.get_mean_value(), rel=1e-12)
    assert fast.min * 1000.0 == ref.get_min_value()
