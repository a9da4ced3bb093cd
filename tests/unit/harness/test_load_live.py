"""The live view: plain lines on stderr off a terminal, a rich panel on one; stdout stays clean."""

from __future__ import annotations

import types
from typing import Any

import pytest

from hif.harness._live import LiveView
from hif.harness.load import LoadSettings

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


def fake_engine() -> Any:
    return types.SimpleNamespace(
        s=LoadSettings(), run_id="r1", chaos_flags=["slow-sae"], poller=types.SimpleNamespace(in_flight=3)
    )


def test_plain_lines_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    live = LiveView("plain", fake_engine())
    live.update(VIEW)
    live.update(VIEW)  # within 5 s of the first: throttled
    live.close()
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "req/s=1234" in lines[0] and "polls_in_flight=3" in lines[0] and "chaos=slow-sae" in lines[0]


def test_rich_panel_and_off(capsys: pytest.CaptureFixture[str]) -> None:
    live = LiveView("rich", fake_engine())
    live.update(VIEW)
    live.close()
    LiveView("off", fake_engine()).update(VIEW)
    out, err = capsys.readouterr()
    assert out == ""
    assert "loop lag p99 ms" in err and "2100" in err


def test_auto_is_plain_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert LiveView("auto", fake_engine()).mode == "plain"
