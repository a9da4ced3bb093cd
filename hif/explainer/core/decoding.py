"""What the pipeline's stages hand each other: an :class:`Extraction` (one job's forward pass) and its
:class:`Decoding` (SAE codes and feature nodes). Attribution, edges and the graph read them; only the
pipeline builds them, so they live here and not beside any one stage."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

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


@dataclasses.dataclass(frozen=True, slots=True)
class NodeTable:
    """Feature nodes as columns (CPU tensors, one row per node). A token job has up to T x k nodes and
    a sentence job one per latent firing in each sentence: thousands, so stages work on the columns
    and only the few nodes a graph keeps become :class:`FeatureNode` objects (``table[i]``)."""

    layer: torch.Tensor  # [n] long
    feature: torch.Tensor  # [n] long
    ctx_idx: torch.Tensor  # [n] long
    activation: torch.Tensor  # [n] float

    @classmethod
    def empty(cls) -> NodeTable:
        none = torch.zeros(0, dtype=torch.long)
        return cls(none, none, none, torch.zeros(0))

    @classmethod
    def concat(cls, tables: list[NodeTable]) -> NodeTable:
        if not tables:
            return cls.empty()
        return cls(*(torch.cat([getattr(t, f.name) for t in tables]) for f in dataclasses.fields(cls)))

    def __len__(self) -> int:
        return int(self.layer.shape[0])

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, i: int) -> FeatureNode:
        return FeatureNode(
            int(self.layer[i]), int(self.feature[i]), int(self.ctx_idx[i]), float(self.activation[i])
        )

    def __iter__(self) -> Iterator[FeatureNode]:
        return iter(self.rows(range(len(self))))

    def rows(self, indices: Sequence[int]) -> list[FeatureNode]:
        """The nodes at ``indices`` as objects, in that order (one gather per column)."""
        at = torch.as_tensor(list(indices), dtype=torch.long)
        columns = (self.layer[at], self.feature[at], self.ctx_idx[at], self.activation[at])
        return [FeatureNode(*row) for row in zip(*(c.tolist() for c in columns), strict=True)]

    def at_layer(self, layer: int) -> torch.Tensor:
        """Indices of the nodes at ``layer``, in table order."""
        return torch.nonzero(self.layer == layer).flatten()


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
    nodes: NodeTable
    content: torch.Tensor  # [T] bool: not a special token

    @property
    def tokens(self) -> list[int]:
        return self.extraction.encoded.input_ids
