"""Feature labels backed by evidence: derived on the training split, scored on a held-out split.

A latent's *candidate* label is the 1-3 most frequent tokens among its top ``TOP`` activations on
the training split. Its score is measured on the label split, text the SAE never trained on:

- ``recall``: of the held-out tokens that spell one of the label's tokens, the share where the
  latent fires;
- ``precision``: of the latent's top ``TOP`` held-out activations, the share at a label token;
- ``score`` = their harmonic mean (F1).

A label scoring below ``LABEL_THRESHOLD`` is stored as ``unlabelled`` (its candidate kept under
``candidate``), so graphs and feature pages never show a label the evidence does not back. The
contexts and the activation histogram come from the held-out split too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Protocol

import torch

from hif.explainer.core.sae import TopKSAE

TOP = 20
LABEL_THRESHOLD = 0.2
UNLABELLED = "unlabelled"
CONTEXTS = 5
HISTOGRAM_BINS = 12


class Tokens(Protocol):
    """The slice of a tokenizer labelling needs."""

    def convert_ids_to_tokens(self, ids: int) -> str: ...


class Acts(Protocol):
    x: torch.Tensor
    token_ids: torch.Tensor


@torch.inference_mode()
def grouped_codes(sae: TopKSAE, x: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, ...]:
    """(value, row) of every firing code sorted by latent then value descending, and per-latent bounds."""
    vals, lats, rows = [], [], []
    for start in range(0, x.shape[0], chunk):
        values, indices = sae.topk(sae.pre_acts(x[start : start + chunk].float()))
        vals.append(values.flatten())
        lats.append(indices.flatten())
        rows.append(torch.arange(start, start + values.shape[0]).repeat_interleave(values.shape[1]))
    val, lat, row = torch.cat(vals), torch.cat(lats), torch.cat(rows)
    keep = val > 0
    val, lat, row = val[keep], lat[keep], row[keep]
    order = torch.argsort(val, descending=True, stable=True)
    order = order[torch.argsort(lat[order], stable=True)]
    starts = torch.searchsorted(lat[order], torch.arange(sae.d_sae))
    ends = torch.searchsorted(lat[order], torch.arange(sae.d_sae), right=True)
    return val[order], row[order], starts, ends


def _histogram(values: torch.Tensor) -> dict[str, list[float]]:
    top = float(values.max())
    edges = torch.linspace(0.0, top, HISTOGRAM_BINS + 1)
    counts = torch.histc(values, bins=HISTOGRAM_BINS, min=0.0, max=top)
    return {"counts": [int(c) for c in counts.tolist()], "edges": [round(e, 4) for e in edges.tolist()]}


def label_latents(
    sae: TopKSAE,
    train: Acts,
    heldout: Acts,
    tokenizer: Tokens,
    context: Any,
) -> dict[str, Any]:
    """Per latent: label (or ``unlabelled``), candidate, score, recall, precision, contexts, histogram.

    ``context(row) -> str`` renders held-out row ``row`` with its token in ``[[ ]]``.
    """
    _, t_row, t_start, t_end = grouped_codes(sae, train.x)
    h_val, h_row, h_start, h_end = grouped_codes(sae, heldout.x)
    spell = _Speller(tokenizer)
    rows_by_token: dict[str, set[int]] = defaultdict(set)
    for r, tid in enumerate(heldout.token_ids.tolist()):
        rows_by_token[spell(tid)].add(r)
    labels: dict[str, Any] = {}
    for latent in range(sae.d_sae):
        picks = t_row[int(t_start[latent]) : min(int(t_end[latent]), int(t_start[latent]) + TOP)]
        held = slice(int(h_start[latent]), int(h_end[latent]))
        labels[str(latent)] = _entry(
            [spell(int(train.token_ids[r])) for r in picks.tolist()],
            h_val[held],
            h_row[held].tolist(),
            [spell(int(heldout.token_ids[r])) for r in h_row[held][:TOP].tolist()],
            rows_by_token,
            context,
        )
    return labels


def _entry(
    train_tokens: list[str],
    held_values: torch.Tensor,
    held_rows: list[int],
    held_top_tokens: list[str],
    rows_by_token: dict[str, set[int]],
    context: Any,
) -> dict[str, Any]:
    if not train_tokens:
        return {"label": "dead latent", "candidate": None, "score": 0.0, "top_tokens": [], "contexts": []}
    common = [t for t, _ in Counter(train_tokens).most_common(3)]
    label_rows = set().union(*(rows_by_token.get(t, set()) for t in common))
    fired = set(held_rows)
    recall = len(label_rows & fired) / len(label_rows) if label_rows else 0.0
    precision = sum(t in common for t in held_top_tokens) / len(held_top_tokens) if held_top_tokens else 0.0
    score = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    candidate = " / ".join(common)
    return {
        "label": candidate if score >= LABEL_THRESHOLD else UNLABELLED,
        "candidate": candidate,
        "score": round(score, 4),
        "recall": round(recall, 4),
        "precision": round(precision, 4),
        "max_activation": round(float(held_values[0]), 4) if held_values.numel() else None,
        "top_tokens": train_tokens[:8],
        "contexts": [context(r) for r in held_rows[:CONTEXTS]],
        "histogram": _histogram(held_values) if held_values.numel() else None,
    }


class _Speller:
    """Token id -> its string, cached (labelling spells each held-out token several times)."""

    def __init__(self, tokenizer: Tokens) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            self.cache[token_id] = str(self.tokenizer.convert_ids_to_tokens(token_id))
        return self.cache[token_id]


def score_summary(labels: dict[str, Any]) -> dict[str, Any]:
    """The distribution of label scores: quantiles, and how many labels pass the threshold."""
    scores = sorted(float(e.get("score") or 0.0) for e in labels.values() if e.get("candidate"))
    if not scores:
        return {"latents": 0}
    pick = lambda q: round(scores[min(len(scores) - 1, int(q * len(scores)))], 4)  # noqa: E731
    return {
        "latents": len(scores),
        "threshold": LABEL_THRESHOLD,
        "labelled_pct": round(100 * sum(s >= LABEL_THRESHOLD for s in scores) / len(scores), 2),
        "p10": pick(0.1),
        "p25": pick(0.25),
        "median": pick(0.5),
        "p75": pick(0.75),
        "p90": pick(0.9),
        "mean": round(sum(scores) / len(scores), 4),
    }
