"""The replacement and completeness scores of an attribution graph, as circuit-tracer defines them.

A port of circuit-tracer's ``compute_graph_scores`` (``circuit_tracer/graph.py``, with its
``normalize_matrix`` and ``compute_influence``) to HIF's graph JSON. The adjacency ``A`` has one row
per node (the target of an edge) and one column per node (the source), with the direct-effect link
weights; rows are normalised to ``|A| / sum |A|``; the influence of every node on the targets is
``w A + w A^2 + ...`` where ``w`` holds each target's probability (``token_prob``). Then

- replacement = influence of the input tokens / (influence of the tokens + of the error nodes):
  how much of the path from the input to the targets runs through features rather than errors;
- completeness = sum over nodes of (1 - the error nodes' share of its normalised inputs) x (its
  influence + its target weight), over the sum of (influence + target weight): partial credit for
  nodes mostly explained by features.

Both are 1.0 when the SAE explains everything. Nodes without inputs (tokens, errors, and features
whose inputs were not computed) count as explained in completeness, as in circuit-tracer; so the
scores are only meaningful when every feature node has its inputs (``graph.build`` stores them only
then).

>>> kinds = [("E", "embedding", 0), ("f", "sae", 0), ("err", ERROR, 0), ("y", "logit", 1)]
>>> nodes = [{"node_id": i, "feature_type": t, "token_prob": p} for i, t, p in kinds]
>>> links = [{"source": "E", "target": "f", "weight": 2.0},
...          {"source": "f", "target": "y", "weight": 3.0}, {"source": "err", "target": "y", "weight": 1.0}]
>>> [round(s, 4) for s in graph_scores(nodes, links)]  # 0.75 / (0.75 + 0.25); 2.5 / 2.75
[0.75, 0.9091]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

EMBEDDING, ERROR, LOGIT = "embedding", "sae reconstruction error", "logit"
MAX_ITER = 1000


def normalize_matrix(matrix: torch.Tensor) -> torch.Tensor:
    normalized = matrix.abs()
    return normalized / normalized.sum(dim=1, keepdim=True).clamp(min=1e-10)


def compute_influence(a: torch.Tensor, logit_weights: torch.Tensor, max_iter: int = MAX_ITER) -> torch.Tensor:
    """``w A + w A^2 + ...`` (the graph is acyclic, so the series ends)."""
    current = logit_weights @ a
    influence = current.clone()
    for _ in range(max_iter):
        if not current.any():
            return influence
        current = current @ a
        influence += current
    raise ValueError(f"influence did not converge in {max_iter} steps: the graph has a cycle")


def adjacency(
    nodes: Sequence[dict[str, Any]], links: Sequence[dict[str, Any]]
) -> tuple[torch.Tensor, dict[str, int]]:
    """[n, n] float64 matrix, ``A[target, source] = weight`` (summed over repeated links), node index."""
    index = {str(n["node_id"]): i for i, n in enumerate(nodes)}
    a = torch.zeros(len(nodes), len(nodes), dtype=torch.float64)
    for link in links:
        a[index[str(link["target"])], index[str(link["source"])]] += float(link["weight"])
    return a, index


def graph_scores(nodes: Sequence[dict[str, Any]], links: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """(replacement, completeness) of the graph with these nodes and (unpruned) links."""
    a, _ = adjacency(nodes, links)
    kinds = [n["feature_type"] for n in nodes]
    is_token = torch.tensor([k == EMBEDDING for k in kinds])
    is_error = torch.tensor([k == ERROR for k in kinds])
    logit_weights = torch.tensor(
        [float(n.get("token_prob") or 0.0) if k == LOGIT else 0.0 for n, k in zip(nodes, kinds, strict=True)],
        dtype=torch.float64,
    )
    normalized = normalize_matrix(a)
    influence = compute_influence(normalized, logit_weights)
    token_influence = float(influence[is_token].sum())
    error_influence = float(influence[is_error].sum())
    replacement = token_influence / max(token_influence + error_influence, 1e-300)
    non_error = 1 - normalized[:, is_error].sum(dim=-1)
    output_influence = influence + logit_weights
    completeness = float((non_error * output_influence).sum() / output_influence.sum().clamp(min=1e-300))
    return replacement, completeness


__all__ = ["adjacency", "compute_influence", "graph_scores", "normalize_matrix"]
