"""An OpenAI-style TopK sparse autoencoder, stored in the SAELens layout.

    f     = ReLU(TopK(W_enc (x - b_pre) + b_enc))
    x_hat = W_dec f + b_pre                      (decoder rows have unit norm)

The files are what SAELens writes (``cfg.json`` + ``sae_weights.safetensors`` with ``W_enc``
[d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc`` [d_sae], ``b_dec`` [d_in]); ``b_dec`` is the
pre-encoder bias (SAELens' ``apply_b_dec_to_input``), so an SAE trained here loads there and back.

>>> sae = TopKSAE(d_in=8, d_sae=32, k=4)
>>> codes = sae.encode(torch.randn(3, 8))
>>> int((codes > 0).sum(-1).max()) <= 4
True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from hif.errors import FeaturesetError

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


class TopKSAE(nn.Module):
    """TopK SAE; ``encode`` returns dense codes with at most ``k`` positive entries per row."""

    def __init__(self, *, d_in: int, d_sae: int, k: int, cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.cfg: dict[str, Any] = dict(cfg or {})
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        # OpenAI's init: random unit decoder rows, encoder = decoder transposed.
        self.W_dec.copy_(torch.randn(self.d_sae, self.d_in, generator=generator))
        self.normalize_decoder()
        self.W_enc.copy_(self.W_dec.t())
        self.b_enc.zero_()
        self.b_dec.zero_()

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def topk(self, pre: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, indices) of the top ``k`` latents per row, ReLU applied to the values."""
        values, indices = pre.topk(min(k or self.k, pre.shape[-1]), dim=-1, sorted=True)
        return values.relu(), indices

    def encode(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        values, indices = self.topk(self.pre_acts(x), k)
        return torch.zeros(*x.shape[:-1], self.d_sae, dtype=x.dtype, device=x.device).scatter(
            -1, indices, values
        )

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.W_dec + self.b_dec

    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """``decode`` from (values, indices) without materialising dense codes: cheap at k << d_sae."""
        # embedding_bag sums the k decoder rows without gathering them ([..., k, d]) first: ~10x faster.
        flat = F.embedding_bag(
            indices.reshape(-1, indices.shape[-1]),
            self.W_dec,
            per_sample_weights=values.reshape(-1, values.shape[-1]),
            mode="sum",
        )
        return flat.view(*indices.shape[:-1], -1) + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # --- SAELens layout ----------------------------------------------------------------------

    def save(self, folder: Path, *, dtype: torch.dtype = torch.float32) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {
            **self.cfg,
            "architecture": "topk",
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "activation_fn_kwargs": {"k": self.k},
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "dtype": str(dtype).removeprefix("torch."),
        }
        (folder / CFG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        tensors = {n: p.detach().to("cpu", dtype).contiguous() for n, p in self.named_parameters()}
        save_file(tensors, str(folder / WEIGHTS_FILE))

    @classmethod
    def load(cls, folder: Path, *, device: str | torch.device = "cpu") -> TopKSAE:
        """Load an SAELens-layout TopK SAE; FeaturesetError when the files are missing or inconsistent."""
        try:
            cfg = json.loads((folder / CFG_FILE).read_text())
            tensors = load_file(str(folder / WEIGHTS_FILE))
        except (OSError, ValueError) as exc:
            raise FeaturesetError(f"cannot read SAE at {folder}: {exc}") from exc
        k = int((cfg.get("activation_fn_kwargs") or {}).get("k") or cfg.get("k") or 0)
        if cfg.get("architecture", "topk") != "topk" or k <= 0:
            raise FeaturesetError(
                f"SAE at {folder} is not a TopK SAE (cfg.json needs activation_fn_kwargs.k)"
            )
        if not cfg.get("apply_b_dec_to_input", True):
            raise FeaturesetError(f"SAE at {folder}: apply_b_dec_to_input=false is not supported")
        sae = cls(d_in=int(cfg["d_in"]), d_sae=int(cfg["d_sae"]), k=k, cfg=cfg)
        try:
            sae.load_state_dict({n: t.float() for n, t in tensors.items()}, strict=True)
        except RuntimeError as exc:
            raise FeaturesetError(f"SAE at {folder} has wrong tensors: {exc}") from exc
        return sae.to(device).eval().requires_grad_(False)


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2."""
    residual = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
    return float(residual / total)


def splice(
    sae: TopKSAE, values: torch.Tensor, indices: torch.Tensor, leaves: dict[str, torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A hook-layer rewrite ``x -> W_dec f + b_dec + e`` with the codes ``f`` and the error ``e`` as
    fresh autograd leaves (stored in ``leaves["codes"]``, ``leaves["error"]``): the forward is
    unchanged, and gradients with respect to the SAE's own codes become available."""

    def rewrite(x: torch.Tensor) -> torch.Tensor:
        codes = values.clone().requires_grad_(True)
        x_hat = F.embedding_bag(indices, sae.W_dec, per_sample_weights=codes, mode="sum") + sae.b_dec
        error = (x[0] - x_hat).detach().requires_grad_(True)
        leaves["codes"], leaves["error"] = codes, error
        return (x_hat + error)[None]

    return rewrite
