"""``hif capacity --prompt-tokens`` against the scripted target: one search per attach rate and prompt
length, each step's requests built from a synthetic dataset of that length, and the frontier keyed
by both in capacity.json, capacity.md, the SVG and the report's chart."""

from __future__ import annotations

import json
from pathlib import Path

from hif.harness import records
from hif.harness.report.capacity import chart_spec
from hif.harness.target import TargetScript
from tests._capacity import search_target
from tests.schemas import validate_file


def test_a_search_per_attach_rate_and_prompt_length(tmp_path: Path) -> None:
    # 100 req/s for 2 s: the judged HDR interval (the second one-second bucket) holds ~100 chats,
    # enough for the p95 with min_tail_samples=1 (20), so each search is one passing step (or a
    # few, when a busy machine leaves a step short of samples and it is extended)
    data = search_target(
        TargetScript(delay_ms=2.0, explain_ms=20.0), tmp_path, timeout_s=90,
        slo=("chat_p95_ms=500",), attach_rates="0,0.5", prompt_tokens="8,64", rate_min=100.0,
        rate_max=100.0, warmup_seconds=0.2, step_seconds=1.8, drain_seconds=0.3, min_tail_samples=1,
        arrival="constant",
    )  # fmt: skip
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
