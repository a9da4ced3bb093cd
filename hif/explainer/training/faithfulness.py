"""Does attribution find the features that matter? Ablation tests on sentence graphs.

For one chat turn the pipeline builds a sentence graph (gradient x activation, one target per
completion sentence). A node is a (sentence, latent) pair; ablating it zeroes that latent's code at
every token of the sentence, with the SAE error term held fixed, so only the ablated codes change
the residual stream. The effect is |change| of the summed targets. Four choices of 5 nodes:

- ``top5_attributed``: the 5 largest |attribution| (what the graph says matters);
- ``random5_active``: 5 random (sentence, latent) pairs whose latent fires in the sentence;
- ``top5_activation``: the 5 pairs with the largest summed activation (the cheap baseline);
- ``random5_graph``: 5 random nodes among the graph's feature nodes.

``error_mass_pct`` is the share of the total |direct attribution| to the targets that error nodes
carry: how much of the explanation the SAE leaves unexplained.

``replacement`` and ``completeness`` are circuit-tracer's graph scores (``core/scores.py``) of the
turn's sentence graph with token -> feature edges into every feature node (mean over turns; null for
featuresets with several hook layers, whose graphs do not carry them).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import statistics
from collections.abc import Callable, Iterable

import torch

from hif.explainer.core.attribution import target_specs, target_values
from hif.explainer.core.decoding import Decoding
from hif.explainer.core.pipeline import SAEPipeline
from hif.explainer.core.segments import sentence_spans
from hif.store.base import Job

ABLATE_N = 5
RANDOM_DRAWS = 8
SEED = 1234
TURNS_PER_DOMAIN = 6
CHOICES = ("top5_attributed", "random5_active", "top5_activation", "random5_graph")

Node = tuple[int, int, int]  # (layer, segment index, latent)


@dataclasses.dataclass(frozen=True, slots=True)
class TurnEffects:
    effects: dict[str, float]  # choice -> mean |change of the summed targets|
    error_mass: float
    total_mass: float
    replacement: float | None = None  # the graph's scores (None where it has none)
    completeness: float | None = None


def turns_from_documents(docs: Iterable[str], n: int = TURNS_PER_DOMAIN) -> list[tuple[str, str]]:
    """(prompt, completion) pairs cut from documents: one sentence, then the next two or three."""
    turns = []
    for doc in docs:
        sentences = [doc[s:e].strip() for s, e in sentence_spans(doc)]
        sentences = [s for s in sentences if len(s) >= 12]
        if len(sentences) >= 3:
            turns.append((sentences[0][:300], " ".join(sentences[1:4])[:600]))
        if len(turns) == n:
            break
    return turns


def _job(pipeline: SAEPipeline, prompt: str, completion: str) -> Job:
    return Job(
        trace_id="eval",
        tenant="eval",
        granularity="sentence",
        featureset=pipeline.featureset.name,
        prompt=prompt,
        completion=completion,
        created_at=0.0,
        expires_at=float("inf"),
        budget_s=0.0,
    )


def _shift(x: torch.Tensor, *, delta: torch.Tensor) -> torch.Tensor:
    return x + delta[None]


def _targets_sum(pipeline: SAEPipeline, decoding: Decoding, ablate: list[Node]) -> float:
    """Summed targets with the ``ablate`` nodes' codes zeroed (each layer's error term held fixed)."""
    positions = {s.index: list(s.positions) for s in decoding.segments}
    hooks: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
    for layer in sorted({n[0] for n in ablate}):
        sae, codes = pipeline.saes[layer], decoding.codes[layer]
        values = codes.values.clone()
        for _, seg, latent in (n for n in ablate if n[0] == layer):
            rows = positions[seg]
            values[rows] = values[rows].masked_fill(codes.indices[rows] == latent, 0.0)
        delta = sae.decode_sparse(values, codes.indices) - sae.decode_sparse(codes.values, codes.indices)
        hooks[layer] = functools.partial(_shift, delta=delta)
    ids = torch.tensor([decoding.tokens], device=pipeline.subject.device)
    with torch.no_grad():
        out = pipeline.subject.run_replaced(ids, hooks)
        targets = target_specs(decoding, pipeline.subject.kind)
        return float(sum(target_values(out, targets, decoding, pipeline.subject.kind)))


def _active(decoding: Decoding) -> dict[Node, float]:
    """Every (layer, segment, latent) whose latent fires in the segment, with its summed activation."""
    out: dict[Node, float] = {}
    for layer, codes in decoding.codes.items():
        for seg in decoding.segments:
            for pos in seg.positions:
                for v, i in zip(codes.values[pos].tolist(), codes.indices[pos].tolist(), strict=True):
                    if v > 0:
                        key = (layer, seg.index, i)
                        out[key] = out.get(key, 0.0) + v
    return out


def turn_effects(pipeline: SAEPipeline, prompt: str, completion: str, rng: random.Random) -> TurnEffects:
    plan = pipeline.default_plan("sentence")
    [extraction] = pipeline.extract([_job(pipeline, prompt, completion)], [plan])
    decoding = pipeline.decode(extraction, plan)
    attribution = pipeline.attribute(decoding, plan)
    effect = attribution.influence.abs().tolist()
    graph = [(n.layer, n.ctx_idx, n.feature) for n in decoding.nodes]
    ranked = sorted(range(len(graph)), key=lambda i: -effect[i])[: plan.max_nodes]
    active = _active(decoding)
    base = _targets_sum(pipeline, decoding, [])

    def moved(nodes: list[Node]) -> float:
        return abs(_targets_sum(pipeline, decoding, nodes) - base)

    def draws(pool: list[Node]) -> float:
        return (
            sum(moved(rng.sample(pool, min(ABLATE_N, len(pool)))) for _ in range(RANDOM_DRAWS)) / RANDOM_DRAWS
        )

    effects = {
        "top5_attributed": moved([graph[i] for i in ranked[:ABLATE_N]]),
        "random5_active": draws(sorted(active)),
        "top5_activation": moved(sorted(active, key=lambda n: -active[n])[:ABLATE_N]),
        "random5_graph": draws([graph[i] for i in ranked]),
    }
    # Every feature node gets its token edges, so the graph carries its replacement/completeness scores.
    job = _job(pipeline, prompt, completion)
    full = dataclasses.replace(plan, embedding_nodes=plan.max_nodes)
    scores = pipeline.graph(job, decoding, attribution, full)["metadata"]["scores"]
    top_layer = max(attribution.error_scores) if attribution.error_scores else None
    error_mass = float(attribution.error_scores[top_layer].abs().sum()) if top_layer is not None else 0.0
    # Direct effects only: the deepest layer's nodes are the ones linked to the targets.
    direct = [i for i, n in enumerate(decoding.nodes) if n.layer == top_layer]
    feature_mass = float(attribution.node_scores[direct].abs().sum()) if direct else 0.0
    return TurnEffects(
        effects, error_mass, error_mass + feature_mass, scores["replacement"], scores["completeness"]
    )


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else None


def summarise(turns: list[TurnEffects]) -> dict[str, float | None]:
    """Mean effect per choice over turns, the two ratios, the error share of attribution mass, and the
    mean replacement and completeness scores."""
    if not turns:
        return {}
    mean = {c: sum(t.effects[c] for t in turns) / len(turns) for c in CHOICES}
    return {
        **{c: round(v, 6) for c, v in mean.items()},
        "ratio_vs_activation": round(mean["top5_attributed"] / max(mean["top5_activation"], 1e-12), 3),
        "ratio_vs_random_active": round(mean["top5_attributed"] / max(mean["random5_active"], 1e-12), 3),
        "error_mass_pct": round(
            100 * sum(t.error_mass for t in turns) / max(sum(t.total_mass for t in turns), 1e-12), 2
        ),
        "replacement_score": _mean([t.replacement for t in turns]),
        "completeness_score": _mean([t.completeness for t in turns]),
        "turns": len(turns),
    }
