"""The live view: plain lines on stderr off a terminal, a rich panel on one; stdout stays clean."""

from __future__ import annotations

from typing import Any

import pytest

from hif.harness.load.live import LiveView

VIEW: dict[str, Any] = {
    "rps": 1234.0,
    "p50_ms": 4.0,
    "p95_ms": 9.5,
    "intended_p99_ms": 30.0,
    "errors": 2,
    "error_rate": 0.01,
    "traces": 7,
    "sentence_p95_ms": 800.0,
    "token_p95_ms": 2100.0,
    "loop_lag_p99_ms": 1.5,
}


CONTEXT: dict[str, Any] = {"polls_in_flight": 3, "chaos": ["slow-sae"]}


def test_plain_lines_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    live = LiveView("plain", title="hif load r1")
    live.update(VIEW, **CONTEXT)
    live.update(VIEW, **CONTEXT)  # within 5 s of the first: throttled
    live.close()
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "req/s=1234" in lines[0] and "polls_in_flight=3" in lines[0] and "chaos=slow-sae" in lines[0]
    assert "sentence_p95=800.0ms" in lines[0] and "token_p95=2100.0ms" in lines[0]
    assert "elapsed=0s" in lines[0] and "sla_p95" not in lines[0]


def test_plain_line_shows_time_left_and_no_data_as_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    live = LiveView("plain", title="hif load r1", duration_s=600)
    live.update({**VIEW, "token_p95_ms": None}, **CONTEXT)
    line = capsys.readouterr().err
    assert "remaining=9m59s" in line or "remaining=10m00s" in line
    assert "token_p95=-" in line


def test_a_streamed_bucket_shows_ttft_and_itl(capsys: pytest.CaptureFixture[str]) -> None:
    live = LiveView("plain", title="hif load r1")
    live.update(VIEW, **CONTEXT)  # not streamed: no stream fields
    assert "TTFT" not in capsys.readouterr().err
    live = LiveView("plain", title="hif load r1")
    live.update({**VIEW, "ttft_p95_ms": 120.0, "itl_p95_ms": 21.5}, **CONTEXT)
    line = capsys.readouterr().err
    assert "TTFT_p95=120.0ms" in line and "ITL_p95=21.5ms" in line
    live = LiveView("plain", title="hif load r1")
    live.update({**VIEW, "ttft_p95_ms": 120.0}, **CONTEXT)  # no local tokenizer: no ITL
    assert "ITL_p95=-" in capsys.readouterr().err


def test_rich_panel_and_off(capsys: pytest.CaptureFixture[str]) -> None:
    live = LiveView("rich", title="hif load r1")
    live.update(VIEW, **CONTEXT)
    live.close()
    LiveView("off", title="hif load r1").update(VIEW, **CONTEXT)
    out, err = capsys.readouterr()
    assert out == ""
    assert "loop lag p99" in err and "2100.0ms" in err and "token p95" in err


def test_auto_is_plain_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert LiveView("auto", title="hif load r1").mode == "plain"
