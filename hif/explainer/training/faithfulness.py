"""Does attribution find the features that matter? Ablation tests on sentence graphs.

For one chat turn the pipeline builds a sentence graph (gradient x activation, one target per
completion sentence). A node is a (sentence, latent) pair, one for every latent that fires in the
sentence; ablating it zeroes that latent's code at every token of the sentence, with the SAE error
term held fixed, so only the ablated codes change the residual stream. The effect is |change| of the
summed targets. The choices of 5 nodes:

- ``top5_attributed``: the 5 largest positive attributions, the features the graph says push the
  targets up most. This is the headline: attribution predicts the joint effect of an ablation as the
  sum of the ablated nodes' scores, so 5 nodes of one sign are what it says moves the targets most;
- ``top5_attributed_abs``: the 5 largest |attribution|, signs mixed. Reported, not the goal: the
  graph itself predicts that such a set partly cancels;
- ``random5_active``: 5 random (sentence, latent) pairs whose latent fires in the sentence;
- ``top5_activation``: the 5 pairs with the largest summed activation (the cheap baseline);
- ``random5_graph``: 5 random nodes among the ones the graph keeps.

``error_mass_pct`` is the share of the total |direct attribution| to the targets that error nodes
(the SAE's reconstruction error) carry against every active feature: how much the SAE leaves
unexplained. ``error_mass_graph_pct`` is the same against the feature nodes the graph keeps (what a
viewer sees); ``pruned_mass_pct`` what the node cap left out.

``replacement`` and ``completeness`` are circuit-tracer's graph scores (``core/scores.py``) of the
turn's sentence graph with token -> feature edges into every kept feature node (mean over the
turns; null for featuresets with several hook layers, whose graphs do not carry them).
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
from hif.explainer.core.graph import kept_nodes
from hif.explainer.core.pipeline import SAEPipeline
from hif.explainer.core.segments import sentence_spans
from hif.store.base import Job

ABLATE_N = 5
RANDOM_DRAWS = 8
SEED = 1234
TURNS_PER_DOMAIN = 20
CHOICES = ("top5_attributed", "top5_attributed_abs", "random5_active", "top5_activation", "random5_graph")

Node = tuple[int, int, int]  # (layer, segment index, latent)


@dataclasses.dataclass(frozen=True, slots=True)
class TurnEffects:
    effects: dict[str, float]  # choice -> mean |change of the summed targets|
    error_mass: float
    total_mass: float  # error + every active feature at the deepest layer
    shown_mass: float  # error + the feature nodes the graph keeps there
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


def turn_effects(
    pipeline: SAEPipeline, prompt: str, completion: str, rng: random.Random, *, scored: bool = True
) -> TurnEffects:
    plan = pipeline.default_plan("sentence")
    [extraction] = pipeline.extract([_job(pipeline, prompt, completion)], [plan])
    decoding = pipeline.decode(extraction, plan)
    attribution = pipeline.attribute(decoding, plan)
    effect = attribution.influence.tolist()
    nodes = [(n.layer, n.ctx_idx, n.feature) for n in decoding.nodes]
    kept = kept_nodes(decoding, attribution, plan)
    supporting = sorted((i for i in range(len(nodes)) if effect[i] > 0), key=lambda i: -effect[i])
    strongest = sorted(range(len(nodes)), key=lambda i: -abs(effect[i]))
    active = _active(decoding)
    base = _targets_sum(pipeline, decoding, [])

    def moved(chosen: list[Node]) -> float:
        return abs(_targets_sum(pipeline, decoding, chosen) - base)

    def draws(pool: list[Node]) -> float:
        return (
            sum(moved(rng.sample(pool, min(ABLATE_N, len(pool)))) for _ in range(RANDOM_DRAWS)) / RANDOM_DRAWS
        )

    effects = {
        "top5_attributed": moved([nodes[i] for i in supporting[:ABLATE_N]]),
        "top5_attributed_abs": moved([nodes[i] for i in strongest[:ABLATE_N]]),
        "random5_active": draws(sorted(active)),
        "top5_activation": moved(sorted(active, key=lambda n: -active[n])[:ABLATE_N]),
        "random5_graph": draws([nodes[i] for i in kept]),
    }
    replacement = completeness = None
    if scored:
        # Every kept feature node gets its token edges, so the graph carries its scores.
        full = dataclasses.replace(plan, embedding_nodes=plan.max_nodes)
        scores = pipeline.graph(_job(pipeline, prompt, completion), decoding, attribution, full)["metadata"]
        replacement, completeness = scores["scores"]["replacement"], scores["scores"]["completeness"]
    top_layer = max(attribution.error_scores) if attribution.error_scores else None
    error_mass = float(attribution.error_scores[top_layer].abs().sum()) if top_layer is not None else 0.0
    # Direct effects only: the deepest layer's nodes are the ones linked to the targets.
    direct = decoding.nodes.at_layer(top_layer).tolist() if top_layer is not None else []
    shown = sorted(set(direct) & set(kept))
    feature_mass = float(attribution.node_scores[direct].abs().sum()) if direct else 0.0
    shown_mass = float(attribution.node_scores[shown].abs().sum()) if shown else 0.0
    return TurnEffects(
        effects, error_mass, error_mass + feature_mass, error_mass + shown_mass, replacement, completeness
    )


def _pct(part: float, whole: float) -> float:
    return round(100 * part / max(whole, 1e-12), 2)


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
        "ratio_abs_vs_activation": round(
            mean["top5_attributed_abs"] / max(mean["top5_activation"], 1e-12), 3
        ),
        "ratio_vs_random_active": round(mean["top5_attributed"] / max(mean["random5_active"], 1e-12), 3),
        "error_mass_pct": _pct(sum(t.error_mass for t in turns), sum(t.total_mass for t in turns)),
        "error_mass_graph_pct": _pct(sum(t.error_mass for t in turns), sum(t.shown_mass for t in turns)),
        "pruned_mass_pct": _pct(
            sum(t.total_mass - t.shown_mass for t in turns), sum(t.total_mass for t in turns)
        ),
        "replacement_score": _mean([t.replacement for t in turns]),
        "completeness_score": _mean([t.completeness for t in turns]),
        "turns": len(turns),
    }
