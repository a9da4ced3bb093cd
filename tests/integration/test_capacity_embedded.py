"""A two-attach-rate capacity search against ``hif serve`` (about 2 attach rates x 6 steps x 15 s)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration._procs import running
from tests.schemas import validate_file

if TYPE_CHECKING:
    from tests.integration.conftest import EmbeddedSystem

pytestmark = [pytest.mark.slow, pytest.mark.explainer, pytest.mark.timeout(600)]


def test_embedded_two_attach_rate_search(embedded_system: EmbeddedSystem, tmp_path: Path) -> None:
    results = tmp_path / "capacity"
    cmd = [
        sys.executable,
        "-m",
        "tests.load.capacity",
        "--base-url",
        embedded_system.base_url,
        "--metrics-url-gateway",
        embedded_system.metrics_url,
        "--metrics-url-explainer",
        embedded_system.explainer_metrics_url,
        "--features",
        embedded_system.featureset,
        "--slo",
        "chat_p95_ms=500",
        "--slo",
        "sentence_p95_ms=1500",
        "--attach-rates",
        "0,0.3",
        "--rate-min",
        "10",
        "--rate-max",
        "160",
        "--step-seconds",
        "12",
        "--warmup-seconds",
        "3",
        "--drain-seconds",
        "10",
        "--max-steps",
        "6",
        "--min-tail-samples",
        "5",
        "--results-dir",
        str(results),
    ]
    with running(cmd, name="capacity", log_dir=tmp_path) as proc:
        code = proc.wait(timeout_s=560)
    assert code in (0, 1), proc.log()
    validate_file(results / "capacity.json")
    data = json.loads((results / "capacity.json").read_text())
    assert [f["attach_rate"] for f in data["frontier"]] == [0.0, 0.3]
    assert all(st["idle_wait_s"] is not None for st in data["steps"])
    for st in data["steps"]:
        assert (Path(st["results_dir"]) / "summary.json").is_file()  # each step a normal run folder
    no_attach, attach = data["frontier"]
    # explanations cost the sidecar far more than chats cost the gateway: attaching never raises it
    if no_attach["rate_rps"] is not None and attach["rate_rps"] is not None:
        assert attach["rate_rps"] <= no_attach["rate_rps"]
    md = (results / "capacity.md").read_text()
    assert "| attach rate |" in md and (results / "capacity.svg").is_file()
