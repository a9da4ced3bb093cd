"""The backpressure controller's levels and hysteresis, and the degradation ladder."""

from __future__ import annotations

from hif.explainer.plan import HEURISTIC, Plan
from hif.explainer.service.backpressure import BackpressureController, Thresholds, apply_ladder
from hif.explainer.settings import ExplainerSettings, SlaSettings
from hif.store.base import BackpressureLevel as L


def controller(hold_s: float = 1.0) -> BackpressureController:
    t = Thresholds.from_settings(
        ExplainerSettings(soft_depth=10, hard_depth=40, recover_hold_s=hold_s), SlaSettings()
    )
    assert (t.soft_lag_s, t.hard_lag_s) == (0.75, 1.5)  # defaults derive from the sentence budget
    return BackpressureController(t)


def test_levels_rise_at_once_by_lag_or_depth() -> None:
    c = controller()
    assert c.evaluate(0.1, 1, now=0).level is L.NONE
    assert c.evaluate(0.8, 1, now=1).level is L.SOFT
    assert c.evaluate(0.1, 45, now=2).level is L.HARD


def test_levels_fall_one_step_after_a_calm_hold() -> None:
    c = controller(hold_s=1.0)
    c.evaluate(2.0, 0, now=0)
    assert c.evaluate(0.6, 0, now=1).level is L.HARD  # below hard but not below half of it yet... calm
    assert c.evaluate(0.6, 0, now=1.5).level is L.HARD  # hold not over
    assert c.evaluate(0.6, 0, now=2.1).level is L.SOFT
    # 0.6 s is under soft (0.75) but not under half of it: stays soft (hysteresis)
    assert c.evaluate(0.6, 0, now=10).level is L.SOFT
    assert c.evaluate(0.1, 0, now=11).level is L.SOFT
    assert c.evaluate(0.1, 0, now=12.1).level is L.NONE


def test_a_blip_resets_the_hold() -> None:
    c = controller(hold_s=1.0)
    c.evaluate(1.0, 0, now=0)
    c.evaluate(0.1, 0, now=1)
    c.evaluate(0.5, 0, now=1.5)  # back above half the soft threshold
    assert c.evaluate(0.1, 0, now=2.2).level is L.SOFT
    assert c.evaluate(0.1, 0, now=3.3).level is L.NONE


def test_rate_limit_spike_raises_the_published_level_only() -> None:
    c = controller()
    signal = c.evaluate(0.0, 0, spike="hard", now=0)
    assert signal.level is L.HARD and "rate-limit-spike" in signal.reason
    assert c.evaluate(0.0, 0, spike="soft", now=1).level is L.SOFT
    assert c.evaluate(0.0, 0, now=2).level is L.NONE


def test_ladder_rungs_by_level_and_pressure() -> None:
    plan = Plan(
        granularity="token", top_k=32, layers=(2, 4), max_nodes=200, max_edges=2000, embedding_nodes=8
    )
    assert apply_ladder(plan, L.NONE, 0.9) == plan
    soft = apply_ladder(plan, L.SOFT, 0.6)
    assert soft.degraded == ("reduce-topk", "reduce-layers", "cap-nodes")
    assert (soft.top_k, soft.layers, soft.max_nodes, soft.granularity) == (16, (4,), 100, "token")
    assert soft.embedding_nodes == 0  # cap-nodes drops the token -> feature edges
    assert apply_ladder(plan, L.SOFT, 0.8).attribution == HEURISTIC
    hard = apply_ladder(plan, L.HARD, 1.0)
    assert hard.granularity == "sentence" and hard.degraded[-1] == "downgrade-token-sentence"
    single = apply_ladder(Plan(granularity="sentence", top_k=4, layers=(4,), max_nodes=16), L.SOFT, 0.1)
    assert single.degraded == ()  # nothing left to shrink: no rung is claimed
