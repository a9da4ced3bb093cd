"""Settings of ``hif featureset build`` and ``hif featureset eval`` (torch-free, like every settings
module): one definition per option serves as flag, ``HIF_FEATURESET_*`` env var and file key.

The env names carry the ``FEATURESET_`` prefix because the plain ones are taken or too generic
(``HIF_SEED`` is the load runner's seed)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from hif.config import option, positive
from hif.errors import ConfigError

ENV = "HIF_FEATURESET_"


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuildSettings:
    """Overrides of the training recipe; an unset one keeps the recipe's value."""

    SECTION: typing.ClassVar[str] = "featureset_build"

    out: Path | None = option(None, help="write here instead of the featureset's sae_path", env=f"{ENV}OUT")
    epochs: int | None = option(None, help="passes over the training tokens", env=f"{ENV}EPOCHS")
    train_tokens: int | None = option(None, help="cap on training tokens", env=f"{ENV}TRAIN_TOKENS")
    heldout_tokens: int | None = option(
        None, help="cap on held-out tokens for the metrics", env=f"{ENV}HELDOUT_TOKENS"
    )
    seed: int | None = option(None, help="random seed (weights are deterministic per seed)", env=f"{ENV}SEED")
    cache: Path | None = option(
        None, help="activation cache file: a rebuild skips the forward passes", env=f"{ENV}CACHE"
    )
    corpus: Path | None = option(
        None,
        help="train on your own text: a file or folder of .txt/.md (blank-line documents) or .jsonl",
        env=f"{ENV}CORPUS",
    )
    relabel: bool = option(
        False,
        help="keep the SAE in the folder: only re-derive, score and measure its labels",
        env=f"{ENV}RELABEL",
    )
    model: Path | None = option(
        None,
        help="a local Hugging Face causal LM folder to train an SAE for (needs --out)",
        env=f"{ENV}MODEL",
    )
    layer: int = option(
        0, help="with --model: the block whose residual output the SAE reads", env=f"{ENV}LAYER"
    )
    latents: int = option(4096, help="with --model: SAE latents", env=f"{ENV}LATENTS")
    k: int = option(32, help="with --model: active latents per token", env=f"{ENV}K")

    def __post_init__(self) -> None:
        if self.model is not None and self.out is None:
            raise ConfigError("model", "--model needs --out DIR (where the SAE is written)")
        if self.layer < 0:
            raise ConfigError("layer", f"must be >= 0, got {self.layer}")
        for key in ("epochs", "train_tokens", "heldout_tokens", "latents", "k"):
            value = getattr(self, key)
            if value is not None:
                positive(key, value)

    def recipe_overrides(self) -> dict[str, int]:
        """The set overrides, keyed by the training recipe's field names."""
        given = {
            "epochs": self.epochs,
            "max_train_tokens": self.train_tokens,
            "max_heldout_tokens": self.heldout_tokens,
            "seed": self.seed,
        }
        return {k: v for k, v in given.items() if v is not None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSettings:
    SECTION: typing.ClassVar[str] = "featureset_eval"

    heldout_tokens: int = option(
        10_000, help="held-out tokens per domain to measure on", env=f"{ENV}HELDOUT_TOKENS"
    )
    turns: int = option(20, help="faithfulness turns cut from each held-out domain's text", env=f"{ENV}TURNS")
    json: bool = option(False, help="print the result as JSON", env=f"{ENV}JSON")
    store: bool = option(True, help="store the result under `eval` in metrics.json", env=f"{ENV}STORE")

    def __post_init__(self) -> None:
        positive("heldout_tokens", self.heldout_tokens)
        positive("turns", self.turns)
