"""``hif featureset`` as a user runs it: a real subprocess, real registry files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration._procs import hif_cmd


def _hif(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hif_cmd("featureset", *args),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_list_shows_the_default_and_the_unavailable_gpu_set() -> None:
    done = _hif("list")
    assert done.returncode == 0, done.stderr
    assert "* sae-minilm-l6-res4-4k" in done.stdout
    assert "sae-gpt4-2m" in done.stdout and "unavailable" in done.stdout


def test_unservable_featureset_is_one_line_and_exit_2() -> None:
    for action in ("build", "eval"):
        done = _hif(action, "sae-gpt4-2m")
        assert done.returncode == 2
        assert done.stderr.strip().startswith("hif: ") and len(done.stderr.strip().splitlines()) == 1


def test_bad_registry_path_is_a_config_error(tmp_path: Path) -> None:
    done = _hif("list", "--featuresets", str(tmp_path / "missing.toml"))
    assert done.returncode == 2 and "hif: featuresets" in done.stderr


@pytest.mark.slow
@pytest.mark.explainer
def test_eval_reports_every_domain_and_exits_by_its_goals() -> None:
    done = _hif("eval", "--heldout-tokens", "3000", "--turns", "6", "--no-store", "--json", timeout_s=900)
    result = json.loads(done.stdout)
    assert set(result["fvu_by_domain"]) == {"prose", "dialogue", "code"}
    assert all(0.0 < v < 1.0 for v in result["fvu_by_domain"].values())
    for row in ("prose", "dialogue", "code", "chat", "heldout"):
        table = result["faithfulness"][row]
        assert table["turns"] == (8 if row == "chat" else 18 if row == "heldout" else 6)
        assert 0.0 <= table["error_mass_pct"] <= table["error_mass_graph_pct"] <= 100.0
        assert table["top5_attributed"] > table["random5_active"]  # attribution beats chance
    assert result["labels"]["scored"] is True
    # Exit 1 exactly when a goal is missed: the figures are reported, never gated to look good.
    assert done.returncode == (0 if all(result["goals"].values()) else 1), done.stderr
