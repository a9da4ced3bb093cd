"""``hif featureset eval``: is the SAE good enough, and does attribution find what matters?

Three goals, measured on data the SAE never trained on:

- held-out fraction of variance unexplained <= 0.15;
- dead latents (never firing on held-out tokens) < 5 %;
- ablation: zeroing the 5 (token, latent) codes with the largest |gradient x activation| moves the
  target at least 5x more than zeroing 5 random active codes (mean over ABLATION_PROMPTS; the SAE
  error term is held fixed, so only the ablated codes change the residual stream).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch

from hif.explainer.core.attribution import gradient_layer, target_specs, target_values
from hif.explainer.core.decoding import Decoding
from hif.explainer.core.pipeline import SAEPipeline
from hif.explainer.training import corpus, train
from hif.store.base import Job

GOAL_FVU = 0.15
GOAL_DEAD_PCT = 5.0
GOAL_ABLATION_RATIO = 5.0
ABLATE_N = 5
RANDOM_DRAWS = 8
SEED = 1234

# Fixed (prompt, completion) pairs: chat-like turns, several sentences each.
ABLATION_PROMPTS: tuple[tuple[str, str], ...] = (
    (
        "How do I open a file in Python?",
        "Use the built-in open() function. It returns a file object. "
        "Close it when you are done, or use a with statement.",
    ),
    (
        "What is a dictionary?",
        "A dictionary maps keys to values. Keys must be hashable. Lookups are fast on average.",
    ),
    (
        "Explain list comprehensions.",
        "They build a list from an iterable in one expression. You can add a condition to filter items.",
    ),
    (
        "Why does my loop never end?",
        "The condition never becomes false. Check that the counter changes "
        "inside the loop. A break statement also exits it.",
    ),
    (
        "What does the socket module do?",
        "It gives access to the BSD socket interface. You can open network connections and send bytes.",
    ),
    (
        "How are exceptions handled?",
        "Wrap the code in a try statement. Each except clause names the errors "
        "it handles. A finally clause always runs.",
    ),
    ("Tell me about the weather today.", "It is sunny and warm in the afternoon. Rain may arrive tonight."),
    (
        "How do threads differ from processes?",
        "Threads share memory inside one process. "
        "Processes have separate address spaces. Switching threads is cheaper.",
    ),
)


@dataclasses.dataclass(frozen=True, slots=True)
class EvalResult:
    fvu: float
    dead_latents_pct: float
    mean_l0: float
    heldout_tokens: int
    ablation_top_mean: float
    ablation_random_mean: float

    @property
    def ablation_ratio(self) -> float:
        return self.ablation_top_mean / max(self.ablation_random_mean, 1e-12)

    def goals(self) -> dict[str, bool]:
        return {
            f"fvu <= {GOAL_FVU}": self.fvu <= GOAL_FVU,
            f"dead latents < {GOAL_DEAD_PCT}%": self.dead_latents_pct < GOAL_DEAD_PCT,
            f"ablation ratio >= {GOAL_ABLATION_RATIO}x": self.ablation_ratio >= GOAL_ABLATION_RATIO,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ablation_ratio": self.ablation_ratio, "goals": self.goals()}


def _target_total(pipeline: SAEPipeline, decoding: Decoding, layer: int, values: torch.Tensor) -> float:
    """Sum of the targets with the layer's codes replaced by ``values`` (error term held fixed)."""
    sae, codes = pipeline.saes[layer], decoding.codes[layer]
    original, indices = codes.values.clone(), codes.indices.clone()
    ids = torch.tensor([decoding.tokens], device=pipeline.subject.device)

    def ablated(x: torch.Tensor) -> torch.Tensor:
        error = x[0] - sae.decode_sparse(original, indices)
        return (sae.decode_sparse(values, indices) + error)[None]

    with torch.no_grad():
        out = pipeline.subject.run_replaced(ids, {layer: ablated})
        targets = target_specs(decoding, pipeline.subject.kind)
        return float(sum(target_values(out, targets, decoding, pipeline.subject.kind)))


def ablation_effects(
    pipeline: SAEPipeline, prompt: str, completion: str, rng: random.Random
) -> tuple[float, float]:
    """(|change| from ablating the top-5 attributed codes, mean |change| from 5 random active codes)."""
    job = Job(
        trace_id="eval",
        tenant="eval",
        granularity="token",
        featureset=pipeline.featureset.name,
        prompt=prompt,
        completion=completion,
        created_at=0.0,
        expires_at=float("inf"),
        budget_s=0.0,
    )
    plan = pipeline.default_plan("token")
    layer = plan.layers[0]
    [extraction] = pipeline.extract([job], [plan])
    decoding = pipeline.decode(extraction, plan)
    targets = target_specs(decoding, pipeline.subject.kind)
    feat, _, _ = gradient_layer(pipeline.subject, pipeline.saes[layer], decoding, layer, targets)
    codes = decoding.codes[layer].values.clone()
    score = feat.sum(0).abs().flatten()
    active = torch.nonzero(codes.flatten() > 0).flatten().tolist()
    base = _target_total(pipeline, decoding, layer, codes)

    def moved(flat_slots: list[int]) -> float:
        ablated = codes.clone().flatten()
        ablated[flat_slots] = 0.0
        return abs(_target_total(pipeline, decoding, layer, ablated.view_as(codes)) - base)

    top = sorted(active, key=lambda i: -float(score[i]))[:ABLATE_N]
    randoms = [moved(rng.sample(active, min(ABLATE_N, len(active)))) for _ in range(RANDOM_DRAWS)]
    return moved(top), sum(randoms) / len(randoms)


def evaluate(pipeline: SAEPipeline, *, heldout_tokens: int = 30_000) -> EvalResult:
    """Recompute the held-out metrics and run the ablation test for ``pipeline``'s first layer."""
    layer = pipeline.featureset.layers[0]
    _, heldout_docs = corpus.split_documents(corpus.corpus_documents())
    windows = train.token_windows(pipeline.subject, heldout_docs, heldout_tokens)
    acts = train.collect(pipeline.subject, windows, layer)
    metrics = train.heldout_metrics(pipeline.saes[layer], acts.x)
    rng = random.Random(SEED)
    effects = [ablation_effects(pipeline, p, c, rng) for p, c in ABLATION_PROMPTS]
    return EvalResult(
        fvu=metrics["fvu"],
        dead_latents_pct=metrics["dead_latents_pct"],
        mean_l0=metrics["mean_l0"],
        heldout_tokens=len(acts.x),
        ablation_top_mean=sum(t for t, _ in effects) / len(effects),
        ablation_random_mean=sum(r for _, r in effects) / len(effects),
    )
