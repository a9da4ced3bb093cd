"""``hif featureset eval``: does the SAE fit chat text, and does attribution find what matters?

Measured on data the SAE never trained on (see ``corpus``: held-out sources per domain):

- FVU per domain (prose, dialogue, code) <= 0.15 each;
- dead latents (never firing on any held-out token) < 2 %;
- faithfulness on sentence graphs (``faithfulness``): zeroing the 5 nodes with the largest positive
  attribution moves the targets at least 2x more than zeroing the top-5 by activation (mean over
  held-out turns);
- error nodes (the SAE's reconstruction error) carry < 15 % of the direct attribution mass on chat
  turns.

The label-score distribution is reported from the featureset's ``labels.json``. The result is
printed and stored under ``eval`` in the featureset's ``metrics.json`` (per layer folder).
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import torch

from hif.errors import FeaturesetError
from hif.explainer.core.pipeline import SAEPipeline
from hif.explainer.features import layer_folder
from hif.explainer.training import corpus, faithfulness, train
from hif.explainer.training.labels import score_summary

GOAL_FVU = 0.15
GOAL_DEAD_PCT = 2.0
GOAL_RATIO_VS_ACTIVATION = 2.0
GOAL_ERROR_MASS_PCT = 15.0
CHAT = "chat"

# Fixed chat turns (question, multi-sentence answer): the "chat text" the error-mass goal is about.
CHAT_TURNS: tuple[tuple[str, str], ...] = (
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
        "Can you suggest a dinner for tonight?",
        "A simple pasta with garlic and olive oil takes twenty minutes. Add a green salad. "
        "If you have time, bake some bread.",
    ),
    (
        "Why does my loop never end?",
        "The condition never becomes false. Check that the counter changes "
        "inside the loop. A break statement also exits it.",
    ),
    ("Tell me about the weather today.", "It is sunny and warm in the afternoon. Rain may arrive tonight."),
    (
        "My flight was cancelled, what should I do?",
        "Ask the airline to rebook you on the next flight. Keep your receipts for meals. "
        "You may be owed compensation.",
    ),
    (
        "How do threads differ from processes?",
        "Threads share memory inside one process. "
        "Processes have separate address spaces. Switching threads is cheaper.",
    ),
    (
        "I feel tired every morning.",
        "Try going to bed at the same time each night. Avoid screens before sleep. "
        "If it goes on, talk to a doctor.",
    ),
)


@dataclasses.dataclass(frozen=True, slots=True)
class EvalResult:
    fvu_by_domain: dict[str, float]
    dead_latents_pct: float
    mean_l0: float
    heldout_tokens_by_domain: dict[str, int]
    labels: dict[str, Any]
    faithfulness: dict[str, dict[str, float | None]]  # domain (and "chat", "heldout") -> table row

    @property
    def fvu(self) -> float:
        return max(self.fvu_by_domain.values())

    def goals(self) -> dict[str, bool]:
        goals = {f"fvu {d} <= {GOAL_FVU}": v <= GOAL_FVU for d, v in self.fvu_by_domain.items()}
        goals[f"dead latents < {GOAL_DEAD_PCT}%"] = self.dead_latents_pct < GOAL_DEAD_PCT
        held = self.faithfulness.get("heldout", {})
        goals[f"top-5 attributed >= {GOAL_RATIO_VS_ACTIVATION}x top-5 by activation (held-out)"] = (
            held.get("ratio_vs_activation") or 0.0
        ) >= GOAL_RATIO_VS_ACTIVATION
        chat = self.faithfulness.get(CHAT, {})
        mass = chat.get("error_mass_pct")
        goals[f"error nodes < {GOAL_ERROR_MASS_PCT}% of attribution mass (chat)"] = (
            mass is not None and mass < GOAL_ERROR_MASS_PCT
        )
        return goals

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fvu": self.fvu, "goals": self.goals()}


def _labels_summary(pipeline: SAEPipeline) -> dict[str, Any]:
    per_layer = {layer: score_summary(labels) for layer, labels in pipeline.labels.items()}
    top = max(per_layer) if per_layer else None
    # Labels written before scoring existed carry no score: say so rather than report zeros.
    if top is None or not any(e.get("candidate") for e in pipeline.labels[top].values()):
        return {"scored": False}
    return {"scored": True, **per_layer[top]}


def _turns(
    pipeline: SAEPipeline, turns: list[tuple[str, str]], rng: random.Random
) -> list[faithfulness.TurnEffects]:
    return [faithfulness.turn_effects(pipeline, p, c, rng) for p, c in turns]


def _faithfulness(
    pipeline: SAEPipeline, heldout: dict[str, list[str]], per_domain: int
) -> dict[str, dict[str, float | None]]:
    rng = random.Random(faithfulness.SEED)
    rows: dict[str, list[faithfulness.TurnEffects]] = {}
    for domain, docs in heldout.items():
        turns = faithfulness.turns_from_documents(docs, per_domain)
        rows[domain] = _turns(pipeline, turns, rng)
    rows[CHAT] = _turns(pipeline, list(CHAT_TURNS), rng)
    table = {domain: faithfulness.summarise(turns) for domain, turns in rows.items()}
    table["heldout"] = faithfulness.summarise([t for d, ts in rows.items() if d != CHAT for t in ts])
    return table


def evaluate(
    pipeline: SAEPipeline, *, heldout_tokens: int = 10_000, turns: int = faithfulness.TURNS_PER_DOMAIN
) -> EvalResult:
    """Per-domain FVU (``heldout_tokens`` per domain), dead latents, label scores and faithfulness
    (``turns`` per held-out domain, and the fixed chat turns).

    FVU and dead latents are measured on the deepest hook layer's SAE (the one linked to targets).
    """
    layer = max(pipeline.featureset.layers)
    heldout = corpus.heldout_documents()
    sae = pipeline.saes[layer]
    acts = {
        d: train.collect(pipeline.subject, train.token_windows(pipeline.subject, docs, heldout_tokens), layer)
        for d, docs in heldout.items()
    }
    per_domain = {d: train.heldout_metrics(sae, a.x) for d, a in acts.items()}
    pooled = train.heldout_metrics(sae, torch.cat([a.x for a in acts.values()]))
    return EvalResult(
        fvu_by_domain={d: m["fvu"] for d, m in per_domain.items()},
        dead_latents_pct=pooled["dead_latents_pct"],
        mean_l0=pooled["mean_l0"],
        heldout_tokens_by_domain={d: len(a.x) for d, a in acts.items()},
        labels=_labels_summary(pipeline),
        faithfulness=_faithfulness(pipeline, heldout, turns),
    )


def store(pipeline: SAEPipeline, result: EvalResult) -> Path:
    """Write ``result`` under ``eval`` in the deepest layer's metrics.json; returns that file."""
    folder = layer_folder(pipeline.featureset, max(pipeline.featureset.layers))
    if folder is None:
        raise FeaturesetError(f"featureset {pipeline.featureset.name!r} has no SAE folder to store in")
    path = folder / train.METRICS_FILE
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["eval"] = result.as_dict()
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path
