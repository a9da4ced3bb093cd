"""``hif featureset build --model DIR --corpus PATH``: an SAE for a user's own causal LM, end to end.

The model is the tiny random GPT-2 the conftest builds; the corpus is a text file written here.
Two builds from scratch must write byte-identical weights (the determinism CI relies on).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from hif.explainer.training.cli import main
from tests.unit.explainer.conftest import TINY_TEXTS, TinyLM

SENTENCES = [t.replace(" . ", ".\n\n") for t in TINY_TEXTS]


def _corpus(tmp_path: Path) -> Path:
    path = tmp_path / "chat.txt"
    path.write_text("\n\n".join(f"{s} {s}" for s in SENTENCES * 3))
    return path


def _build(tiny_lm: TinyLM, corpus: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "build",
            "--model", str(tiny_lm.root / "model"),
            "--out", str(out),
            "--corpus", str(corpus),
            "--layer", "1",
            "--latents", "32",
            "--k", "4",
            "--epochs", "3",
            "--heldout-tokens", "500",
            *extra,
        ]
    )  # fmt: skip


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "sae_weights.safetensors").read_bytes()).hexdigest()


def test_build_for_a_local_causal_lm_is_deterministic_and_scored(tiny_lm: TinyLM, tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    assert _build(tiny_lm, corpus, tmp_path / "a") == 0
    assert _build(tiny_lm, corpus, tmp_path / "b") == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["layer"] == 1 and metrics["d_sae"] == 32 and metrics["k"] == 4
    assert set(metrics["fvu_by_domain"]) == {"user"} and 0.0 <= metrics["fvu"] < 1.0
    labels = json.loads((tmp_path / "a" / "labels.json").read_text())
    scored = [e for e in labels.values() if e.get("candidate")]
    assert scored and all(0.0 <= e["score"] <= 1.0 for e in scored)
    # Below the threshold a label shows as unlabelled; at or above it, as its candidate.
    for entry in scored:
        shown = entry["candidate"] if entry["score"] >= metrics["labels"]["threshold"] else "unlabelled"
        assert entry["label"] == shown
    assert any(e["histogram"] and sum(e["histogram"]["counts"]) > 0 for e in scored)


def test_model_without_config_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "--model", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("hif: ") and len(err.splitlines()) == 1


def test_model_needs_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["build", "--model", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err


def test_the_built_sae_explains_a_turn_with_token_probabilities(
    tiny_lm: TinyLM, tmp_path: Path, make_job: Any
) -> None:
    from hif.explainer.core.pipeline import load_pipeline
    from hif.explainer.featureset import load_registry

    assert _build(tiny_lm, _corpus(tmp_path), tmp_path / "sae") == 0
    registry = tmp_path / "featuresets.toml"
    registry.write_text(
        f'default = "mine"\n[featuresets.mine]\nmodel = "{tiny_lm.root / "model"}"\n'
        f'model_kind = "causal-lm"\nlayers = [1]\nlatents = 32\nk = 4\nsae_path = "{tmp_path / "sae"}"\n'
    )
    pipeline = load_pipeline(load_registry(registry).get("mine"), device="cpu", threads=1)
    job = make_job("how do i use it ?", "open the file . close the file when done .", "token")
    plan = pipeline.default_plan("token")
    [ex] = pipeline.extract([job], [plan])
    dec = pipeline.decode(ex, plan)
    graph = pipeline.graph(job, dec, pipeline.attribute(dec, plan), plan)
    targets = [n for n in graph["nodes"] if n["is_target_logit"]]
    # Teacher forcing: one target per produced token, each carrying that token's probability.
    assert targets and all(0.0 < n["token_prob"] < 1.0 for n in targets)
    assert all(n["clerp"].endswith(")") and "(p=" in n["clerp"] for n in targets)
    scored = [n for n in graph["nodes"] if n.get("hif_label_score") is not None]
    assert scored, "feature nodes carry their label's held-out score"


def test_relabel_keeps_the_weights_and_rescores_the_labels(tiny_lm: TinyLM, tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    assert _build(tiny_lm, corpus, tmp_path / "a") == 0
    before = _digest(tmp_path / "a")
    (tmp_path / "a" / "labels.json").unlink()
    assert _build(tiny_lm, corpus, tmp_path / "a", "--relabel") == 0
    assert _digest(tmp_path / "a") == before
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["labels_corpus_sha256"] and metrics["train_tokens"] > 0  # the training record stays
    labels = json.loads((tmp_path / "a" / "labels.json").read_text())
    assert len(labels) == 32 and any(e.get("candidate") for e in labels.values())


def test_a_layer_trains_the_same_in_a_one_or_two_layer_featureset(tiny_lm: TinyLM, tmp_path: Path) -> None:
    """Each hook layer's SAE is seeded and fed on its own, so the two-layer featureset's upper SAE is
    byte for byte the one-layer featureset's (how the shipped two-layer build reuses layer 4)."""
    import dataclasses

    from hif.explainer.training.train import TrainConfig, build_featureset, model_featureset

    corpus = _corpus(tmp_path)
    one = model_featureset(tiny_lm.root / "model", layer=1, latents=32, k=4, out=tmp_path / "one")
    two = dataclasses.replace(one, name="two-layers", layers=(0, 1), sae_path=tmp_path / "two")
    config = TrainConfig(epochs=2, max_heldout_tokens=300)
    build_featureset(one, config=config, user_corpus=corpus)
    build_featureset(two, config=config, user_corpus=corpus)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two" / "layer_1")
    assert _digest(tmp_path / "two" / "layer_0") != _digest(tmp_path / "one")
