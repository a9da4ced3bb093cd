"""The backpressure controller and the degradation ladder.

The controller turns queue lag (age of the oldest unacked job) and depth into a level:

    none -> soft   when lag >= soft_lag_s or depth >= soft_depth
    any  -> hard   when lag >= hard_lag_s or depth >= hard_depth
    a level drops one step only after lag and depth have stayed under ``recover_ratio`` of that
    level's thresholds for ``recover_hold_s`` (hysteresis: no flapping at the boundary).

The ``rate-limit-spike`` chaos flag raises the level to its severity while it is on. The supervisor
publishes the result to the TraceStore (gateways shed new attachments at HARD) and workers read it
back to shrink each job's :class:`~hif.explainer.plan.Plan` with :func:`apply_ladder`:

    soft                  reduce-topk, reduce-layers, cap-nodes
    soft, pressure >= .75 + heuristic-attribution (no backward pass)
    hard (or >= .9)       + downgrade-token-sentence; queued jobs that cannot meet their budget
                          expire early (expire-early)
"""

from __future__ import annotations

import dataclasses
import time

from hif.explainer.plan import (
    CAP_NODES,
    DOWNGRADE_GRANULARITY,
    HEURISTIC,
    HEURISTIC_ATTRIBUTION,
    REDUCE_LAYERS,
    REDUCE_TOPK,
    Plan,
)
from hif.explainer.settings import ExplainerSettings, SlaSettings
from hif.store.base import BackpressureLevel, BackpressureSignal

HEURISTIC_PRESSURE = 0.75  # share of the hard threshold where attribution drops its backward pass
DOWNGRADE_PRESSURE = 0.9  # share of the hard threshold where token jobs become sentence jobs
MIN_TOP_K = 4
MIN_NODES = 16
LEVEL_NAMES = {BackpressureLevel.NONE: "none", BackpressureLevel.SOFT: "soft", BackpressureLevel.HARD: "hard"}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    soft_lag_s: float
    hard_lag_s: float
    soft_depth: int
    hard_depth: int
    recover_ratio: float = 0.5
    recover_hold_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: ExplainerSettings, sla: SlaSettings) -> Thresholds:
        return cls(
            soft_lag_s=settings.soft_lag_s or sla.sentence_budget_s / 2,
            hard_lag_s=settings.hard_lag_s or sla.sentence_budget_s,
            soft_depth=settings.soft_depth,
            hard_depth=settings.hard_depth,
            recover_ratio=settings.recover_ratio,
            recover_hold_s=settings.recover_hold_s,
        )

    def pressure(self, lag_s: float, depth: int) -> float:
        """How close the queue is to HARD: 1.0 at the hard threshold."""
        return max(lag_s / self.hard_lag_s, depth / self.hard_depth)

    def raw_level(self, lag_s: float, depth: int, *, scale: float = 1.0) -> BackpressureLevel:
        if lag_s >= self.hard_lag_s * scale or depth >= self.hard_depth * scale:
            return BackpressureLevel.HARD
        if lag_s >= self.soft_lag_s * scale or depth >= self.soft_depth * scale:
            return BackpressureLevel.SOFT
        return BackpressureLevel.NONE


class BackpressureController:
    """Level with hysteresis; ``evaluate`` is called once per supervisor tick."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.level = BackpressureLevel.NONE
        self._calm_since: float | None = None

    def evaluate(
        self,
        lag_s: float,
        depth: int,
        *,
        spike: str | None = None,
        now: float | None = None,
    ) -> BackpressureSignal:
        """The level for this tick; ``spike`` is the rate-limit-spike severity when that flag is on."""
        now = time.time() if now is None else now
        t = self.thresholds
        raw = t.raw_level(lag_s, depth)
        if raw >= self.level:
            self.level, self._calm_since = raw, None
        elif t.raw_level(lag_s, depth, scale=t.recover_ratio) < self.level:
            # Calm relative to the current level's (scaled) thresholds: start or continue the hold.
            self._calm_since = now if self._calm_since is None else self._calm_since
            if now - self._calm_since >= t.recover_hold_s:
                self.level = BackpressureLevel(self.level - 1)
                self._calm_since = now
        else:
            self._calm_since = None
        level, reason = self.level, f"lag {lag_s:.2f}s depth {depth}"
        if spike is not None:
            spiked = BackpressureLevel.HARD if spike == "hard" else BackpressureLevel.SOFT
            if spiked > level:
                level, reason = spiked, f"chaos rate-limit-spike ({spike}); {reason}"
        return BackpressureSignal(level=level, reason=reason, updated_at=now)


def apply_ladder(plan: Plan, level: BackpressureLevel, pressure: float) -> Plan:
    """Shrink ``plan`` for the current level; every rung that changed something is recorded."""
    if level == BackpressureLevel.NONE:
        return plan
    if plan.top_k > MIN_TOP_K:
        plan = plan.degrade(REDUCE_TOPK, top_k=max(MIN_TOP_K, plan.top_k // 2))
    if len(plan.layers) > 1:
        plan = plan.degrade(REDUCE_LAYERS, layers=plan.layers[-1:])
    if plan.max_nodes > MIN_NODES:
        # Token -> feature edges cost a backward pass through the blocks below the hook layer: they go too.
        plan = plan.degrade(
            CAP_NODES,
            max_nodes=max(MIN_NODES, plan.max_nodes // 2),
            max_edges=plan.max_edges // 2,
            embedding_nodes=0,
        )
    hard = level == BackpressureLevel.HARD
    if (hard or pressure >= HEURISTIC_PRESSURE) and plan.attribution != HEURISTIC:
        plan = plan.degrade(HEURISTIC_ATTRIBUTION, attribution=HEURISTIC)
    if (hard or pressure >= DOWNGRADE_PRESSURE) and plan.granularity == "token":
        plan = plan.degrade(DOWNGRADE_GRANULARITY, granularity="sentence")
    return plan


def cannot_meet_budget(age_s: float, expected_cost_s: float, budget_s: float) -> bool:
    """At HARD, a queued job whose age plus expected work already exceeds its budget expires early."""
    return age_s + expected_cost_s > budget_s
