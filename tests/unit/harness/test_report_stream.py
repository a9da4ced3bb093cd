"""The report of a streamed run, from hand-made chat records v2: TTFT and TPOT for the run, per time
bucket and per chaos window, the Streaming section, the stream chart and stream gates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hif.harness.records import CHAOS_EVENTS_FILE, CHAT_FILE, HISTOGRAM_LOG_FILE, REPORT_SCHEMA, SUMMARY_FILE
from hif.harness.report.charts import stream_chart
from hif.harness.report.html import chart_specs, render_html
from hif.harness.report.markdown import render_markdown
from hif.harness.report.windows import IntervalLog, interval_log
from hif.harness.stats import LOG_HEADER, Interval, LatencyHistogram, write_intervals
from tests.unit.harness.test_report import T0, build, chat, write


def streamed(ts: float, ttft_ms: float | None, tpot_ms: float | None, **extra: Any) -> dict[str, Any]:
    rec = chat(ts, 100.0, v="hif.chat.v2", stream=True, **extra)
    rec.update(ttft_ms=ttft_ms, intended_ttft_ms=None if ttft_ms is None else ttft_ms + 5.0, tpot_ms=tpot_ms)
    return rec


def _run(d: Path) -> None:
    """30 s at 10 streams/s; TTFT 10 ms (TPOT 2 ms) outside a slow-sae window at 10..20 s, where
    TTFT is 40 ms and TPOT 8 ms. Every 50th stream was cut before its first token (no TTFT)."""
    recs = []
    for i in range(300):
        inside = 100 <= i < 200
        if i % 50 == 49:
            recs.append(streamed(T0 + i / 10, None, None))
            continue
        recs.append(streamed(T0 + i / 10, 40.0 if inside else 10.0, 8.0 if inside else 2.0))
    write(d / CHAT_FILE, recs)
    write(
        d / CHAOS_EVENTS_FILE,
        [
            {"ts": T0 + 10, "action": "enable", "flag": "slow-sae", "params": {"percent": 50.0}},
            {"ts": T0 + 20, "action": "disable", "flag": "slow-sae", "params": {}},
        ],
    )


def test_stream_figures_for_the_run_the_buckets_and_the_window(tmp_path: Path) -> None:
    _run(tmp_path)
    data = build(tmp_path)
    assert data["schema"] == REPORT_SCHEMA == "hif.report.v4"
    st = data["chat"]["stream"]
    assert st["streams"] == 294 and st["ttft_ms"]["count"] == 294
    assert st["ttft_ms"]["p50_ms"] == pytest.approx(10.0, rel=1e-3)
    assert st["ttft_ms"]["p95_ms"] == pytest.approx(40.0, rel=1e-3)
    assert st["intended_ttft_ms"]["p50_ms"] == pytest.approx(15.0, rel=1e-3)
    assert st["tpot_ms"]["max_ms"] == pytest.approx(8.0, rel=1e-3)
    (w,) = data["chaos"]["windows"]
    assert [w[k]["chat"]["ttft_p95_ms"] for k in ("pre", "during", "post")] == pytest.approx(
        [10, 40, 10], rel=1e-3
    )
    assert [w[k]["chat"]["tpot_p99_ms"] for k in ("pre", "during", "post")] == pytest.approx(
        [2, 8, 2], rel=1e-3
    )
    assert w["delta"]["during"]["ttft_p95_ms"] == pytest.approx(30.0, rel=1e-3)
    s = data["series"]
    by_t = dict(zip(s["t"], s["ttft_p95_ms"], strict=True))
    assert by_t[T0] == pytest.approx(10.0, rel=0.05) and by_t[T0 + 10] == pytest.approx(40.0, rel=0.05)
    assert data["histograms"]["stream.ttft"]  # mergeable, like the chat and SLA histograms
    assert "itl_ms" not in st and w["during"]["chat"]["itl_p95_ms"] is None  # no histograms.hlog


def test_streaming_section_and_chart(tmp_path: Path) -> None:
    _run(tmp_path)
    data = build(tmp_path)
    md = render_markdown(data, {"stream": "chart_stream.png"})
    assert "## Streaming" in md and "294 streamed chats" in md
    assert "| slow-sae | 10.0 / 40.0 / 10.0 |" in md.replace(" ms", "")
    assert "![TTFT, TPOT and ITL over time](chart_stream.png)" in md
    specs = {c["id"]: c for c in chart_specs(data)}
    labels = [ln["label"] for ln in specs["stream"]["lines"]]
    assert labels == ["TTFT p95", "TTFT p99", "TPOT p95", "TPOT p99"]  # no hlog: no ITL line


def test_a_run_that_did_not_stream_has_no_stream_parts(tmp_path: Path) -> None:
    write(tmp_path / CHAT_FILE, [chat(T0 + i / 10, 5.0) for i in range(50)])
    data = build(tmp_path)
    assert "stream" not in data["chat"] and all(v is None for v in data["series"]["ttft_p95_ms"])
    assert "## Streaming" not in render_markdown(data, {})
    assert "stream" not in {c["id"] for c in chart_specs(data)}


def test_stream_gates_are_judged_on_the_records(tmp_path: Path) -> None:
    _run(tmp_path)
    gates = [
        {"name": "ttft_p95_ms", "threshold": 30.0, "value": 1.0, "pass": True},  # the runner's value
        {"name": "tpot_p50_ms", "threshold": 5.0, "value": 1.0, "pass": True},
    ]
    (tmp_path / SUMMARY_FILE).write_text(json.dumps({"slo": {"gates": gates, "pass": True}}))
    slo = build(tmp_path)["slo"]
    got = {g["name"]: (g["value"], g["pass"]) for g in slo["gates"]}
    assert got["ttft_p95_ms"][0] == pytest.approx(40.0, rel=1e-3) and got["ttft_p95_ms"][1] is False
    assert got["tpot_p50_ms"][0] == pytest.approx(2.0, rel=1e-3) and got["tpot_p50_ms"][1] is True
    assert slo["pass"] is False


def _itl_log(d: Path, offset_s: float = 0.6) -> None:
    """histograms.hlog with one stream.itl interval a second, each starting ``offset_s`` past the
    second, so an interval straddles each edge of the 10..20 s window: the intervals whose
    midpoint lies in the window hold 5 gaps of 80 ms, the others 5 gaps of 20 ms. Assigning by
    the interval's start instead of its midpoint would put an 80 ms interval in *pre*."""
    intervals = []
    for i in range(30):
        start = T0 + i + offset_s
        h = LatencyHistogram()
        for _ in range(5):
            h.record(80.0 if 10 <= i + offset_s + 0.5 < 20 else 20.0)
        intervals.append(Interval("stream.itl", start, start + 1.0, h))
        intervals.append(Interval("chat.service", start, start + 1.0, h))  # another tag: not ITL
    with open(d / HISTOGRAM_LOG_FILE, "w") as fh:
        fh.write(LOG_HEADER)
        write_intervals(fh, intervals)


def test_itl_per_chaos_window_comes_from_the_interval_log(tmp_path: Path) -> None:
    _run(tmp_path)
    _itl_log(tmp_path)
    data = build(tmp_path)
    itl = data["chat"]["stream"]["itl_ms"]
    assert itl["count"] == 150 and itl["p50_ms"] == pytest.approx(20.0, rel=1e-3)
    assert itl["max_ms"] == pytest.approx(80.0, rel=1e-3)
    (w,) = data["chaos"]["windows"]
    for key in ("itl_p95_ms", "itl_p99_ms"):
        assert [w[k]["chat"][key] for k in ("pre", "during", "post")] == pytest.approx([20, 80, 20], rel=1e-3)
    assert w["delta"]["during"]["itl_p95_ms"] == pytest.approx(60.0, rel=1e-3)
    assert LatencyHistogram.decode(data["histograms"]["stream.itl"]).count == 150
    md = render_markdown(data, {})
    assert "| chaos window | TTFT p95 | TTFT p99 | TPOT p95 | ITL p95 | ITL p99 |" in md
    assert "| slow-sae | 10.0 / 40.0 / 10.0 |" in md.replace(" ms", "")
    # 80 ms reads 80.1: HDR's highest equivalent value of its bucket (80 000 .. 80 063 us)
    assert "| 20.0 / 80.1 / 20.0 | 20.0 / 80.1 / 20.0 |" in md.replace(" ms", "")
    assert "| ITL, per token | 150 |" in md
    page = render_html(data, tmp_path).read_text()
    assert "ITL p99" in page and "20.0 / 80.1 / 20.0" in page


def test_itl_gates_are_judged_on_the_interval_log(tmp_path: Path) -> None:
    _run(tmp_path)
    _itl_log(tmp_path)
    gates = [{"name": "itl_p99_ms", "threshold": 50.0, "value": 1.0, "pass": True}]  # the runner's value
    (tmp_path / SUMMARY_FILE).write_text(json.dumps({"slo": {"gates": gates, "pass": True}}))
    (gate,) = build(tmp_path)["slo"]["gates"]
    assert gate["value"] == pytest.approx(80.0, rel=1e-3) and gate["pass"] is False


def test_an_interval_counts_in_the_part_holding_its_midpoint(tmp_path: Path) -> None:
    _itl_log(tmp_path, offset_s=0.0)
    (tmp_path / "other").mkdir()
    _itl_log(tmp_path / "other", offset_s=0.0)  # a second shard: its intervals add up
    log = interval_log([tmp_path / HISTOGRAM_LOG_FILE, tmp_path / "other" / HISTOGRAM_LOG_FILE], "stream.itl")
    assert isinstance(log, IntervalLog) and len(log.mids) == 60
    assert log.within(T0 + 10, T0 + 20).total == 100 and log.within(T0 + 10, T0 + 20).percentile_ms(0) == 80.0
    # [T0 + 9, T0 + 10) has its midpoint at 9.5: in a part from 9.4, not in one from 9.6
    assert log.within(T0 + 9.4, T0 + 10).total == 10 and log.within(T0 + 9.6, T0 + 10).total == 0
    assert interval_log([tmp_path / "missing.hlog"], "stream.itl").within(-1e18, 1e18).total == 0


def test_itl_over_time_in_the_series_and_both_stream_charts(tmp_path: Path) -> None:
    """ITL p95/p99 per time bucket from the interval log, each interval in the bucket holding its
    midpoint: the 80 ms intervals (midpoints in 10..20 s) fill buckets 10..19 and no other."""
    _run(tmp_path)
    _itl_log(tmp_path)
    (tmp_path / SUMMARY_FILE).write_text(
        json.dumps({"slo": {"gates": [{"name": "itl_p95_ms", "threshold": 50.0}], "pass": False}})
    )
    data = build(tmp_path)
    s = data["series"]
    assert s["bucket_s"] == 1.0
    by_t = {round(t - T0): v for t, v in zip(s["t"], s["itl_p95_ms"], strict=True)}
    assert by_t[9] == pytest.approx(20.0, rel=0.01) and by_t[20] == pytest.approx(20.0, rel=0.01)
    assert all(by_t[b] == pytest.approx(80.0, rel=0.01) for b in range(10, 20))
    assert by_t[0] is None  # the first interval's midpoint is at 1.1 s
    assert s["itl_p99_ms"][s["t"].index(T0 + 15)] == pytest.approx(80.0, rel=0.01)
    stream = {c["id"]: c for c in chart_specs(data)}["stream"]
    lines = {ln["label"]: ln for ln in stream["lines"]}
    assert {"ITL p95", "ITL p99", "SLO itl p95 50 ms"} <= set(lines)
    on_grid = dict(zip(stream["x"], lines["ITL p95"]["values"], strict=True))
    assert on_grid[15.0] == pytest.approx(80.0, rel=0.01) and on_grid[5.0] == pytest.approx(20.0, rel=0.01)
    # the PNG chart draws from the same series
    assert (
        stream_chart(data, tmp_path) == "chart_stream.png" and (tmp_path / "chart_stream.png").stat().st_size
    )
