"""The report of a streamed run, from hand-made chat records v2: TTFT and TPOT for the run, per time
bucket and per chaos window, the Streaming section, the stream chart and stream gates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hif.harness.records import CHAOS_EVENTS_FILE, CHAT_FILE, REPORT_SCHEMA, SUMMARY_FILE
from hif.harness.report.html import chart_specs
from hif.harness.report.markdown import render_markdown
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


def test_streaming_section_and_chart(tmp_path: Path) -> None:
    _run(tmp_path)
    data = build(tmp_path)
    md = render_markdown(data, {"stream": "chart_stream.png"})
    assert "## Streaming" in md and "294 streamed chats" in md
    assert "| slow-sae | 10.0 / 40.0 / 10.0 |" in md.replace(" ms", "")
    assert "![TTFT and TPOT over time](chart_stream.png)" in md
    specs = {c["id"]: c for c in chart_specs(data)}
    labels = [ln["label"] for ln in specs["stream"]["lines"]]
    assert labels == ["TTFT p95", "TTFT p99", "TPOT p95", "TPOT p99"]


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
