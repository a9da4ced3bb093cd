"""Label scoring: a label is derived on the training split and scored on a held-out split."""

from __future__ import annotations

import dataclasses

import torch

from hif.explainer.core.sae import TopKSAE
from hif.explainer.training.labels import LABEL_THRESHOLD, UNLABELLED, label_latents, score_summary

D = 8


@dataclasses.dataclass
class _Acts:
    x: torch.Tensor
    token_ids: torch.Tensor


class _Tok:
    def convert_ids_to_tokens(self, ids: int) -> str:
        return f"t{ids}"


def _identity_sae() -> TopKSAE:
    """Latent j reads direction j and nothing else: it fires exactly where the input points at j."""
    sae = TopKSAE(d_in=D, d_sae=D, k=1)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(D))
        sae.W_dec.copy_(torch.eye(D))
    return sae


def _acts(tokens: list[int], direction: dict[int, int] | None = None) -> _Acts:
    """One-hot rows: token t points at direction t unless ``direction`` remaps it."""
    dirs = [(direction or {}).get(t, t) for t in tokens]
    return _Acts(torch.eye(D)[dirs], torch.tensor(tokens))


def test_latents_firing_on_their_token_score_high_and_broken_ones_show_unlabelled() -> None:
    tokens = [i % D for i in range(400)]
    train = _acts(tokens)
    # On held-out text, token 5 no longer drives latent 5 (it points at 6): latent 5's label, "t5",
    # is no longer backed by evidence, and latent 6 now fires on t5 and t6 alike.
    heldout = _acts(tokens, direction={5: 6})
    labels = label_latents(_identity_sae(), train, heldout, _Tok(), context=lambda r: f"[[row {r}]]")
    assert labels["2"]["label"] == "t2" and labels["2"]["score"] == 1.0
    assert labels["5"]["candidate"] == "t5" and labels["5"]["label"] == UNLABELLED
    assert labels["5"]["score"] < LABEL_THRESHOLD and labels["5"]["recall"] == 0.0
    assert labels["6"]["precision"] < 1.0  # half of its top held-out activations sit on t5
    assert sum(labels["2"]["histogram"]["counts"]) == 50
    assert labels["2"]["contexts"][0].startswith("[[row ")


def test_score_summary_counts_labels_at_or_above_the_threshold() -> None:
    labels = {
        "0": {"candidate": "a", "score": 0.9},
        "1": {"candidate": "b", "score": 0.1},
        "2": {"candidate": None, "score": 0.0},  # dead: no candidate, not counted
    }
    summary = score_summary(labels)
    assert summary["latents"] == 2 and summary["labelled_pct"] == 50.0
