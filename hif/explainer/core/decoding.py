"""What the pipeline's stages hand each other: an :class:`Extraction` (one job's forward pass) and its
:class:`Decoding` (SAE codes and feature nodes). Attribution, edges and the graph read them; only the
pipeline builds them, so they live here and not beside any one stage."""

from __future__ import annotations

import dataclasses

import torch

from hif.explainer.core.model import Encoded
from hif.explainer.core.segments import Segment
from hif.explainer.plan import Plan
from hif.store.base import Job


@dataclasses.dataclass(slots=True)
class Extraction:
    job: Job
    plan: Plan
    encoded: Encoded
    hidden: dict[int, torch.Tensor]  # layer -> [T, d] residual stream after that block
    # layer -> ([T, k] values, [T, k] latent ids): the SAE's top k, encoded for the whole batch at once
    topk: dict[int, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class FeatureNode:
    layer: int
    feature: int
    ctx_idx: int  # token position (token granularity) or segment index (sentence granularity)
    activation: float


@dataclasses.dataclass(slots=True)
class LayerCodes:
    values: torch.Tensor  # [T, k] SAE activations (0 at special tokens)
    indices: torch.Tensor  # [T, k] latent ids
    error: torch.Tensor  # [T, d] x - x_hat


@dataclasses.dataclass(slots=True)
class Decoding:
    extraction: Extraction
    granularity: str
    segments: list[Segment]
    codes: dict[int, LayerCodes]
    nodes: list[FeatureNode]
    content: torch.Tensor  # [T] bool: not a special token

    @property
    def tokens(self) -> list[int]:
        return self.extraction.encoded.input_ids
