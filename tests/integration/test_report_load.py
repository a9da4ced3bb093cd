"""The report against results written by a real short load run (two shards) against the scripted target.

Two load shards run at once against ``hif.harness.target`` while chaos is toggled through the
control file; the report over both result dirs must agree with the shards' own summary.json
counts, place the chaos window from the copied event log, and render every view.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from hif import chaos, harness
from hif.harness import target
from hif.harness.stats import LatencyHistogram, merged
from tests.schemas import validate_results


def _shards(tmp_path: Path, control: Path) -> list[dict[str, Any]]:
    async def go() -> list[Any]:
        server = target.TargetServer(target.TargetScript(delay_ms=2.0, error_rate=0.05, explain_ms=40.0))
        await server.start()
        loop = asyncio.get_running_loop()
        # chaos flags toggle while both shards run; the runner copies the event log into each dir
        loop.call_later(
            1.0, lambda: chaos.apply_change(enable=chaos.Fault(flag="slow-sae", percent=50), path=control)
        )
        loop.call_later(2.0, lambda: chaos.apply_change(disable="slow-sae", path=control))
        try:
            runs = [
                harness.run_load(
                    harness.LoadSettings(
                        base_url=server.url,
                        results_dir=tmp_path / f"shard{i}",
                        live="off",
                        duration_seconds=3.0,
                        concurrency=4,
                        attach_rate=0.3,
                        granularity="mix",
                        shard=f"{i}/2",
                        seed=i,
                    )
                )
                for i in (1, 2)
            ]
            return list(await asyncio.gather(*runs))
        finally:
            await server.close()

    asyncio.run(go())
    return [json.loads((tmp_path / f"shard{i}" / "summary.json").read_text()) for i in (1, 2)]


def test_report_merges_real_shards_and_matches_their_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = tmp_path / "chaos" / "chaos.json"
    monkeypatch.setenv("CHAOS_CONTROL_PATH", str(control))
    monkeypatch.delenv("CHAOS_EVENT_LOG_PATH", raising=False)
    summaries = _shards(tmp_path, control)
    dirs = (tmp_path / "shard1", tmp_path / "shard2")
    out = tmp_path / "merged"
    data = harness.run_report(harness.ReportSettings(results_dirs=dirs, out_dir=out, chaos_path=control))
    for d in (*dirs, out):
        validate_results(d)

    chat = data["chat"]
    assert data["inputs"]["corrupt_lines"] == {"chat": 0, "explanation": 0}
    assert chat["requests"] == sum(s["chat"]["requests"] for s in summaries) > 0
    assert chat["errors"] == sum(s["chat"]["errors"] for s in summaries)
    assert data["explanations"]["traces"] == sum(s["explanations"]["traces"] for s in summaries) > 0
    assert data["slo"]["source"] == "not gated" and data["slo"]["pass"] is None  # no --slo gates
    assert data["inputs"]["warnings"] == []  # two shards of one run

    (w,) = data["chaos"]["windows"]
    assert data["chaos"]["source"] == "event_log" and w["flag"] == "slow-sae"
    assert w["during"]["chat"]["requests"] > 0 and w["pre"]["chat"]["requests"] > 0
    md = (out / "report.md").read_text()
    assert "## Chaos" in md and "![chat latency over time](chart_latency.png)" in md

    # the merged histogram equals the shards' own histograms merged (H4's encoding, exact counts)
    shard_hists = [LatencyHistogram.decode(s["histograms"]["chat.service"]) for s in summaries]
    ours = LatencyHistogram.decode(data["histograms"]["chat.service"])
    assert ours.count == merged(shard_hists).count == chat["requests"]

    # one shard alone: the report's percentiles are the runner's own (same HDR layout; the JSONL
    # keeps latencies to the microsecond, so a value may land one bucket over)
    one = harness.build_report([dirs[0]], harness.ReportSettings(results_dirs=(dirs[0],), chaos_path=control))
    theirs = summaries[0]["chat"]["latency_ms"]
    assert one["chat"]["latency_ms"]["count"] == theirs["count"]
    assert one["chat"]["latency_ms"]["p95_ms"] == pytest.approx(theirs["p95_ms"], rel=2e-3)
