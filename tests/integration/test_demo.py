"""``hif demo`` end to end: its chaos window shows a visible explanation-lane delta in the report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration._procs import hif_cmd

pytestmark = [pytest.mark.slow, pytest.mark.explainer]


@pytest.mark.timeout(900)
def test_demo_chaos_window_moves_the_explanation_lane(tmp_path: Path) -> None:
    results = tmp_path / "results"
    cmd = hif_cmd(
        "demo",
        "--duration-seconds", "50",
        "--chaos-at-seconds", "15",
        "--chaos-seconds", "20",
        "--port", str(free_port()),
        "--metrics-port", str(free_port()),
        "--explainer-metrics-port", str(free_port()),
        "--results-dir", str(results),
    )  # fmt: skip
    env = {**os.environ, "CHAOS_CONTROL_PATH": str(tmp_path / "chaos.json")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Goodput" in done.stdout  # the report's first lines, echoed
    data = json.loads((results / "report.json").read_text())
    assert data["saturation"]["saturated"] is False  # the demo's load is one the explainer can serve
    (w,) = [w for w in data["chaos"]["windows"] if w["flag"] == "slow-sae"]
    assert w["explanations_masked"] is False
    pre, during = w["pre"]["explanations"], w["during"]["explanations"]
    share_drop = (pre["complete_rate"] or 0.0) - (during["complete_rate"] or 0.0)
    sla_rise = (during["sentence_p95_ms"] or 0.0) - (pre["sentence_p95_ms"] or 0.0)
    assert share_drop >= 0.10 or sla_rise >= 500.0, (pre, during)
    md = (results / "report.md").read_text()
    assert "| slow-sae (percent=100, jitter_ms=400) |" in md and "explanations recover" in md
    assert (results / "report.html").is_file()
