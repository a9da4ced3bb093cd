"""The faithfulness table's ablations, on the tiny GPT-2 pipeline (sentence graphs, causal-LM targets)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from hif.explainer.core.attribution import target_specs, target_values
from hif.explainer.training import faithfulness
from hif.explainer.training.evaluate import EvalResult

PROMPT, COMPLETION = "how do i use it ?", "open the file . close the file when done . the loop ends ."


def _decoding(pipeline: Any, make_job: Any) -> Any:
    plan = pipeline.default_plan("sentence")
    [ex] = pipeline.extract([make_job(PROMPT, COMPLETION)], [plan])
    return pipeline.decode(ex, plan)


def test_no_ablation_is_the_plain_forward_and_silent_latents_change_nothing(
    tiny_pipeline: Any, make_job: Any
) -> None:
    dec = _decoding(tiny_pipeline, make_job)
    ids = torch.tensor([dec.tokens])
    plain = tiny_pipeline.subject.run_replaced(ids, {})
    expected = float(sum(target_values(plain, target_specs(dec, "causal-lm"), dec, "causal-lm")))
    assert faithfulness._targets_sum(tiny_pipeline, dec, []) == pytest.approx(expected, abs=1e-5)
    layer = tiny_pipeline.featureset.layers[0]
    silent = next(f for f in range(64) if not bool((dec.codes[layer].indices == f).any()))
    assert faithfulness._targets_sum(tiny_pipeline, dec, [(layer, 1, silent)]) == pytest.approx(
        expected, abs=1e-6
    )
    active = faithfulness._active(dec)
    assert faithfulness._targets_sum(tiny_pipeline, dec, sorted(active)) != pytest.approx(expected, abs=1e-4)


def test_turn_effects_fill_every_column(tiny_pipeline: Any) -> None:
    turn = faithfulness.turn_effects(tiny_pipeline, PROMPT, COMPLETION, random.Random(0))
    assert set(turn.effects) == set(faithfulness.CHOICES)
    assert all(v >= 0 for v in turn.effects.values()) and turn.effects["top5_attributed"] > 0
    assert 0 <= turn.error_mass <= turn.shown_mass <= turn.total_mass
    row = faithfulness.summarise([turn])
    assert 0 <= row["error_mass_pct"] <= 100 and row["turns"] == 1
    # the sentence graph's circuit-tracer scores, with token edges into every feature node
    assert turn.replacement is not None and turn.completeness is not None
    assert 0 < turn.replacement < 1 and 0 < turn.completeness < 1
    assert row["replacement_score"] == round(turn.replacement, 4)
    assert row["completeness_score"] == round(turn.completeness, 4)


def test_turns_are_cut_from_documents_with_three_sentences() -> None:
    docs = ["Too short.", "First sentence here. Second one follows. Third one ends. Fourth."]
    # "Fourth." is under 12 characters: fragments that short are dropped.
    assert faithfulness.turns_from_documents(docs) == [
        ("First sentence here.", "Second one follows. Third one ends.")
    ]


def test_goals_name_each_domain_and_miss_honestly() -> None:
    row = {"ratio_vs_activation": 1.2, "error_mass_pct": 20.0}
    result = EvalResult({"prose": 0.2, "code": 0.1}, 1.0, 32.0, {}, {}, {"heldout": row, "chat": row})
    goals = result.goals()
    assert goals["fvu prose <= 0.15"] is False and goals["fvu code <= 0.15"] is True
    assert [k for k, ok in goals.items() if not ok] == [
        "fvu prose <= 0.15",
        "top-5 attributed >= 2.0x top-5 by activation (held-out)",
        "error nodes < 15.0% of attribution mass (chat)",
    ]


def test_top5_attributed_are_the_largest_positive_attributions(tiny_pipeline: Any, make_job: Any) -> None:
    """The headline choice ablates the 5 nodes the graph says push the targets up most; zeroing them
    lowers the summed targets (the sign attribution predicts)."""
    dec = _decoding(tiny_pipeline, make_job)
    plan = tiny_pipeline.default_plan("sentence")
    effect = tiny_pipeline.attribute(dec, plan).influence
    nodes = [(n.layer, n.ctx_idx, n.feature) for n in dec.nodes]
    top = [nodes[i] for i in effect.argsort(descending=True)[:5].tolist()]
    assert all(float(effect[nodes.index(n)]) > 0 for n in top)
    base = faithfulness._targets_sum(tiny_pipeline, dec, [])
    after = faithfulness._targets_sum(tiny_pipeline, dec, top)
    turn = faithfulness.turn_effects(tiny_pipeline, PROMPT, COMPLETION, random.Random(0), scored=False)
    assert turn.effects["top5_attributed"] == pytest.approx(abs(after - base), rel=1e-6)
    assert after < base
    assert turn.replacement is None and turn.completeness is None  # scored=False skips the slow edges
