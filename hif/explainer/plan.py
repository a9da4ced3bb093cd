"""The contract between the worker (leases, backpressure, chaos, persistence) and the pipeline
(model, SAE, attribution).

The worker decides a :class:`Plan` per job from the featureset's defaults and the backpressure
ladder, then drives the pipeline stage by stage, timing each::

    plan = pipeline.default_plan(job.granularity)     # then the ladder may shrink it
    batch = pipeline.extract(jobs, plans)             # one forward pass, batched by tokens
    decoded = pipeline.decode(batch[i], plan)         # TopK SAE encode, per token / sentence
    attributed = pipeline.attribute(decoded, plan)    # gradient x activation; AttributionError
    results = pipeline.attribute_batch(decodeds, plans)  # the same for a batch, in shared passes
    attributed = pipeline.heuristic(decoded, plan)    # the fallback, no backward pass
    graph = pipeline.graph(job, decoded, attributed, plan)   # circuit-tracer-shaped JSON dict

Extraction/Decoding/Attribution objects are the pipeline's own; the worker only passes them on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from hif.explainer.featureset import EMBEDDING_NODES, FeaturesetInfo
from hif.store.base import Job

# Ladder rungs, in the order the controller applies them; names appear in traces and metrics.
REDUCE_TOPK = "reduce-topk"
REDUCE_LAYERS = "reduce-layers"
CAP_NODES = "cap-nodes"
HEURISTIC_ATTRIBUTION = "heuristic-attribution"
DOWNGRADE_GRANULARITY = "downgrade-token-sentence"
SHED = "shed"
EXPIRE_EARLY = "expire-early"
LADDER = (REDUCE_TOPK, REDUCE_LAYERS, CAP_NODES, HEURISTIC_ATTRIBUTION, DOWNGRADE_GRANULARITY, SHED)

GRADIENT = "gradient"
HEURISTIC = "heuristic"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How much work one job gets; the ladder only ever shrinks it."""

    granularity: str  # "sentence" | "token"
    top_k: int  # the SAE's k: latents encoded per token (reduce-topk lowers it)
    layers: tuple[int, ...]  # hook layers to read
    attribution: str = GRADIENT  # GRADIENT | HEURISTIC
    max_nodes: int = 200
    max_edges: int = 2000
    max_bytes: int = 2_000_000  # the stored graph's JSON, before compression
    embedding_nodes: int = EMBEDDING_NODES  # feature nodes given token -> feature edges (0: none)
    # Whether the job shares passes with its batch (attribution_batching=on): the SAE encode and the
    # packed forward in extract; False runs the one-job-at-a-time path, the baseline the bench compares.
    batched: bool = True
    degraded: tuple[str, ...] = ()  # ladder rungs applied, in order

    def degrade(self, rung: str, **changes: Any) -> Plan:
        if rung in self.degraded:
            return dataclasses.replace(self, **changes)
        return dataclasses.replace(self, degraded=(*self.degraded, rung), **changes)


class Pipeline(Protocol):
    featureset: FeaturesetInfo

    def default_plan(self, granularity: str) -> Plan: ...

    def extract(self, jobs: Sequence[Job], plans: Sequence[Plan]) -> list[Any]: ...

    def decode(self, extraction: Any, plan: Plan) -> Any: ...

    def attribute(self, decoding: Any, plan: Plan) -> Any:
        """Gradient attribution; raises AttributionError when it cannot run."""

    def attribute_batch(self, decodings: Sequence[Any], plans: Sequence[Plan]) -> list[Any]:
        """``attribute`` for several jobs in shared passes: per job, its result or its AttributionError."""

    def heuristic(self, decoding: Any, plan: Plan) -> Any:
        """Activation x cosine(decoder row, target direction): no backward pass."""

    def graph(self, job: Job, decoding: Any, attribution: Any, plan: Plan) -> dict[str, Any]: ...
