"""report.json first, then report.md and PNG charts rendered from that file; the soak section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hif import chaos
from hif.harness.records import CHAOS_EVENTS_FILE, CHAT_FILE, EXPLANATION_FILE, SOAK_SUMMARY_FILE
from hif.harness.report import run as report
from tests.schemas import validate_file

T0 = 1_764_201_600.0
PNG = b"\x89PNG\r\n\x1a\n"


def _results(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / CHAT_FILE, "w") as fh:
        for i in range(300):
            state = ("queued" if i % 3 else "shed") if i % 2 else None
            fh.write(
                json.dumps(
                    {
                        "ts": T0 + i / 10,
                        "status": 200,
                        "latency_ms": 10 + (i % 7),
                        "intended_latency_ms": 11 + (i % 7),
                        "attached": state is not None,
                        "explanation_state": state,
                    }
                )
                + "\n"
            )
    with open(d / EXPLANATION_FILE, "w") as fh:
        for i in range(50):
            fh.write(
                json.dumps(
                    {"ts": T0 + i / 2, "state": "complete", "granularity": "sentence", "sla_ms": 300.0 + i}
                )
                + "\n"
            )
    events = [
        {"ts": T0 + 10, "action": "enable", "flag": "rate-limit-spike", "params": {"severity": "hard"}},
        {"ts": T0 + 20, "action": "disable", "flag": "rate-limit-spike", "params": {}},
    ]
    (d / CHAOS_EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))


def _soak_summary() -> dict[str, Any]:
    seg = {
        "chat": {"latency_ms": {"p95_ms": 120.0}, "error_rate": 0.001},
        "explanations": {
            "sla_ms": {"sentence": {"p95_ms": 900.0}, "token": {"p95_ms": 2000.0}},
            "expired_failed_rate": 0.0,
        },
    }
    bad = json.loads(json.dumps(seg))
    bad["chat"]["latency_ms"]["p95_ms"] = 800.0
    return {
        "v": "hif.soak.v1",
        "status": "finished",
        "slo": {"chat_p95_ms": 500.0, "error_rate": 0.01},
        "segments": [
            {**seg, "plan": {"number": 1, "phase": "high", "attach_rate": 0.3, "granularity": "mix"}},
            {**bad, "plan": {"number": 2, "phase": "low", "attach_rate": 0.4, "granularity": "mix"}},
            {**seg, "plan": {"number": 3}, "slo_breaches": ["token_p95_ms"]},
        ],
        "series": {
            "t_h": [0.0, 0.1, 0.2],
            "chat_p95_ms": [120.0, 800.0, 120.0],
            "gateway_rss_bytes": [1e8, 1.1e8, 1.2e8],
            "backpressure_level": [0, 2, 1],
            "note": ["x", None],
        },
        "drift": {
            "overall": "leak",
            "findings": ["gateway_rss_bytes: leak (slope 2e8/h)"],
            "series": {
                "gateway_rss_bytes": {
                    "verdict": "leak",
                    "slope_per_hour": 2e8,
                    "relative_slope_per_hour": 1.8,
                    "r2": 0.99,
                }
            },
        },
    }


def test_report_files_charts_and_sections(tmp_path: Path) -> None:
    _results(tmp_path)
    (tmp_path / SOAK_SUMMARY_FILE).write_text(json.dumps(_soak_summary()))
    control = tmp_path / "chaos.json"
    chaos.apply_change(enable=chaos.Fault(flag="slow-sae", percent=50, jitter_ms=150), path=control)
    out = tmp_path / "out"
    data = report.run_report(report.ReportSettings(results_dirs=(tmp_path,), out_dir=out, chaos_path=control))
    saved = json.loads((out / "report.json").read_text())
    validate_file(out / "report.json")
    assert saved["schema"] == report.REPORT_SCHEMA and saved["chat"] == json.loads(json.dumps(data["chat"]))
    for name in ("chart_latency.png", "chart_sla.png", "chart_backpressure.png", "chart_soak.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    md = (out / "report.md").read_text()
    for needle in (
        "![chat latency over time](chart_latency.png)",
        "![soak series](chart_soak.png)",
        "## Chaos",
        "rate-limit-spike (severity=hard)",
        "Active now",
        "slow-sae (percent=50, jitter_ms=150)",
        "Drift / leak verdict: **leak**",
        "## SLOs",
        "| shed |",
    ):
        assert needle in md, needle
    assert saved["chat"]["admissions"] == {"queued": 100, "shed": 50}
    assert saved["chaos"]["snapshot"]["flags"]["slow-sae"]["percent"] == 50


def test_soak_segments_that_broke_an_slo_are_flagged(tmp_path: Path) -> None:
    _results(tmp_path)
    (tmp_path / SOAK_SUMMARY_FILE).write_text(json.dumps(_soak_summary()))
    soak = report.build_report([tmp_path])["soak"]
    assert soak["breaching_segments"] == [2, 3]
    assert [r["breaches"] for r in soak["segments"]] == [[], ["chat_p95_ms"], ["token_p95_ms"]]
    assert soak["series"]["gateway_rss_bytes"] == [1e8, 1.1e8, 1.2e8] and "note" not in soak["series"]
    assert soak["drift"]["overall"] == "leak"


def test_markdown_is_rendered_from_the_saved_file(tmp_path: Path) -> None:
    _results(tmp_path)
    settings = report.ReportSettings(results_dirs=(tmp_path,), chaos_path=tmp_path / "c.json", charts=False)
    report.run_report(settings)
    path = tmp_path / "report.json"
    data = json.loads(path.read_text())
    data["chat"]["requests"] = 123456789  # edit the artifact: the view must follow the file
    path.write_text(json.dumps(data))
    md = report.render_report(path, charts=False).read_text()
    assert "123,456,789 requests" in md
    assert not (tmp_path / "chart_latency.png").exists()


def test_corrupt_control_file_is_reported_not_fatal(tmp_path: Path) -> None:
    _results(tmp_path)
    control = tmp_path / "chaos.json"
    control.write_text("{broken")
    data = report.build_report(
        [tmp_path], report.ReportSettings(results_dirs=(tmp_path,), chaos_path=control)
    )
    assert "not valid JSON" in data["chaos"]["snapshot"]["error"]


def test_charts_do_not_mislead() -> None:
    """One colour per flag and mode; no line across a gap; units a person reads."""
    from hif.harness.report.charts import gapped, readable, shade_color, shade_label

    hard = {"flag": "rate-limit-spike", "params": {"severity": "hard"}}
    soft = {"flag": "rate-limit-spike", "params": {"severity": "soft"}}
    fallback = {"flag": "fail-attribution", "params": {"mode": "fallback"}}
    fail = {"flag": "fail-attribution", "params": {"mode": "fail"}}
    assert shade_color(hard) != shade_color(soft) and shade_label(hard) != shade_label(soft)
    assert shade_color(fallback) != shade_color(fail)
    xs, ys = gapped([0.0, 1.0, 2.0, 10.0, 11.0], [5.0, None, 7.0, 8.0, 9.0], step=1.0)
    assert xs == [0.0, 1.0, 2.0, 6.0, 10.0, 11.0]
    assert [y != y for y in ys] == [False, True, False, True, False, False]  # NaN breaks the line
    assert readable("gateway_rss_bytes") == ("gateway rss (MB)", 1e-6)
    assert readable("chat_error_rate") == ("chat error (%)", 100.0)
