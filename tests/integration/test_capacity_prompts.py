"""``hif capacity --prompt-tokens`` against the scripted target: one search per attach rate and prompt
length, each step's requests built from a synthetic dataset of that length, and the frontier keyed
by both in capacity.json, capacity.md, the SVG and the report's chart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hif.harness import records
from hif.harness.capacity.run import run_capacity
from hif.harness.capacity.settings import CapacitySettings
from hif.harness.client import new_event_loop
from hif.harness.report.capacity import chart_spec
from hif.harness.target import TargetScript, TargetServer
from tests.schemas import validate_file


def test_a_search_per_attach_rate_and_prompt_length(tmp_path: Path) -> None:
    # 100 req/s for 2 s: the judged HDR interval (the second one-second bucket) holds ~100 chats,
    # enough for the p95 with min_tail_samples=1 (20), so each search is one passing step (or a
    # few, when a busy machine leaves a step short of samples and it is extended)
    async def go() -> dict[str, Any]:
        server = TargetServer(TargetScript(delay_ms=2.0, explain_ms=20.0))
        await server.start()
        try:
            settings = CapacitySettings(
                base_url=server.url, slo=("chat_p95_ms=500",), attach_rates="0,0.5", prompt_tokens="8,64",
                rate_min=100.0, rate_max=100.0, warmup_seconds=0.2, step_seconds=1.8, drain_seconds=0.3,
                min_tail_samples=1, idle_timeout_seconds=1.0, metrics_url_gateway="off",
                metrics_url_explainer="off", results_dir=tmp_path, arrival="constant",
            )  # fmt: skip
            return await run_capacity(settings)
        finally:
            await server.close()

    loop = new_event_loop()
    try:
        data = loop.run_until_complete(asyncio.wait_for(go(), 90))
    finally:
        loop.close()
    assert data["schema"] == records.CAPACITY_SCHEMA == "hif.capacity.v2"
    assert data["exit_code"] == 0, [(st["verdict"], st["gates"], st["reasons"]) for st in data["steps"]]
    validate_file(tmp_path / records.CAPACITY_JSON_FILE)
    keys = [(f["attach_rate"], f["prompt_tokens"]) for f in data["frontier"]]
    assert keys == [(0.0, 8), (0.0, 64), (0.5, 8), (0.5, 64)]
    verdicts = [
        (st["attach_rate"], st["prompt_tokens"], st["verdict"], st["reasons"]) for st in data["steps"]
    ]
    assert all(f["rate_rps"] == 100.0 for f in data["frontier"]), verdicts
    for st in data["steps"]:  # each step ran on prompts of its own length
        folder = Path(st["results_dir"])
        assert folder.parent.name == f"prompt-{st['prompt_tokens']}"
        summary = json.loads((folder / records.SUMMARY_FILE).read_text())
        assert summary["settings"]["dataset"].startswith(f"synthetic:prompt_tokens={st['prompt_tokens']},")
    md = (tmp_path / "capacity.md").read_text()
    assert "| attach rate | prompt tokens | highest passing rate (req/s) |" in md
    assert "| 0.5 | 64 | 100.0 (rate_max: beyond) |" in md
    assert (tmp_path / "capacity.svg").read_text().count("<polyline") == 2  # one frontier per length
    spec = chart_spec({"capacity": {"source": "capacity.json", "data": data}})
    assert spec is not None
    labels = [ln["label"] for ln in spec["lines"]]
    assert "frontier (8 prompt tokens)" in labels and "frontier (64 prompt tokens)" in labels
