"""A compressed soak against ``hif serve``: six 5-second spiky segments, SIGINT after two, resume.

The first run is the module form (``python -m tests.load.soak_runner``), interrupted with SIGINT
once at least two segments are checkpointed; the resume is the script form
(``python tests/load/soak_runner.py --resume``). Together they must cover the plan exactly once.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hif.harness.records import CHAT_FILE, SOAK_SUMMARY_FILE
from tests.integration._procs import running
from tests.schemas import validate_results

if TYPE_CHECKING:
    from tests.integration.conftest import EmbeddedSystem

pytestmark = [pytest.mark.explainer, pytest.mark.timeout(300)]

SEGMENT_S = 5.0
SEGMENTS = 6


def soak_args(system: EmbeddedSystem, results: Path) -> list[str]:
    return [
        "--base-url",
        system.base_url,
        "--profile",
        "spiky",
        "--hours",
        repr(SEGMENTS * SEGMENT_S / 3600),
        "--segment-minutes",
        repr(SEGMENT_S / 60),
        "--concurrency-scale",
        "0.005",  # high 800 -> 4 workers; low 200 -> 1 worker at 1 req/s
        "--features",
        system.featureset,
        "--results-dir",
        str(results),
        "--metrics-url-gateway",
        system.metrics_url,
        "--metrics-url-explainer",
        system.explainer_metrics_url,
        "--drain-seconds",
        "3",
        "--timeout-seconds",
        "10",
        "--poll-deadline-seconds",
        "15",
    ]


def read_summary(results: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((results / SOAK_SUMMARY_FILE).read_text()))
    except (FileNotFoundError, ValueError):
        return {"segments": []}


def interrupted_run(system: EmbeddedSystem, results: Path, log_dir: Path) -> dict[str, Any]:
    """Start the soak, SIGINT it once two segments are checkpointed, return what it saved."""
    cmd = [sys.executable, "-m", "tests.load.soak_runner", *soak_args(system, results)]
    with running(cmd, name="soak_runner", log_dir=log_dir) as proc:
        proc.wait_ready(lambda: len(read_summary(results)["segments"]) >= 2, timeout_s=90, interval_s=0.2)
        proc.signal(signal.SIGINT)
        code = proc.wait(timeout_s=60)
        assert code == 130, proc.log()
    return read_summary(results)


def test_compressed_soak_resumes_after_sigint(embedded_system: EmbeddedSystem, tmp_path: Path) -> None:
    results = tmp_path / "results"
    before = interrupted_run(embedded_system, results, tmp_path)
    done = len(before["segments"])
    assert before["status"] == "interrupted" and 2 <= done < SEGMENTS

    resumed_at = time.time()
    script = [sys.executable, "tests/load/soak_runner.py", *soak_args(embedded_system, results), "--resume"]
    with running(script, name="soak_resume", log_dir=tmp_path, split_output=True) as resume:
        code = resume.wait(timeout_s=180)
        assert code == 0, resume.log()
    assert json.loads(resume.stdout().strip().splitlines()[-1])["status"] == "finished"

    summary = read_summary(results)
    segments = summary["segments"]
    assert summary["status"] == "finished" and summary["resumes"] == 1
    assert [s["number"] for s in segments] == list(range(1, SEGMENTS + 1))
    assert segments[:done] == before["segments"]

    # Profile shape and rotation rules.
    assert [(s["phase"], s["concurrency"]) for s in segments] == [("high", 4), ("low", 1)] * 3
    assert all(s["rps_limit"] == 0 for s in segments[::2]) and all(s["rps_limit"] > 0 for s in segments[1::2])
    assert [s["granularity"] for s in segments] == ["mix"] * 4 + ["token", "mix"]
    assert [s["attach_rate"] for s in segments] == [0.3, 0.35, 0.4, 0.45, 0.5, 0.45]

    # The series: every segment measured, high phases offered more load than the 1 req/s low ones.
    for s in segments:
        assert s["chat"]["requests"] > 0 and s["chat"]["p95_ms"] is not None, s["number"]
        assert len(s["buckets"]) >= 3
        for component in ("gateway", "explainer"):
            health = s["health"][component]
            assert health["ok"] and health["rss_bytes"] > 0 and health["open_fds"] > 0, (component, health)
    assert min(s["chat"]["rps"] for s in segments[::2]) > max(s["chat"]["rps"] for s in segments[1::2])
    series = summary["series"]
    assert all(len(series[k]) == SEGMENTS for k in ("t_h", "chat_rps", "chat_p95_ms", "gateway_rss_bytes"))
    assert series["t_h"] == sorted(series["t_h"])
    # Thirty seconds is no basis for a per-hour verdict: the slope is reported, the verdict withheld.
    assert summary["drift"]["overall"] == "insufficient-data"
    assert summary["drift"]["series"]["gateway_rss_bytes"]["slope_per_hour"] is not None

    # The interrupted segment's partial records were cut; its rerun's records are all newer.
    validate_results(results)
    records = [json.loads(line) for line in (results / CHAT_FILE).read_text().splitlines()]
    runs = {r["run"] for r in records}
    assert runs == {f"soak-{i:04d}" for i in range(1, SEGMENTS + 1)}
    rerun = f"soak-{done + 1:04d}"
    assert all(r["ts"] >= resumed_at for r in records if r["run"] == rerun)
    assert sum(r["run"] == rerun for r in records) == segments[done]["chat"]["requests"]
