"""Feature -> feature edges across layers (token granularity, featuresets with several hook layers).

For consecutive hook layers ``lo < hi`` the lower layer's SAE codes are spliced in as leaves and the
upper SAE's pre-activation of each of the strongest upper nodes is differentiated with respect to
them: edge weight = ``code_lo * d pre_hi / d code_lo`` (gradient x activation again), for the
top ``EDGES_PER_NODE`` sources of each of at most ``max_targets`` upper nodes. Each edge costs one
backward through the blocks between the two layers; the caller caps it by the node/edge budget.
"""

from __future__ import annotations

import itertools

import torch

from hif.explainer.core.decoding import Decoding
from hif.explainer.core.model import SubjectModel
from hif.explainer.core.sae import TopKSAE, splice

EDGES_PER_NODE = 8


def _node_index(decoding: Decoding, layer: int) -> dict[tuple[int, int], int]:
    nodes = decoding.nodes
    mine = nodes.at_layer(layer)
    pairs = zip(nodes.ctx_idx[mine].tolist(), nodes.feature[mine].tolist(), strict=True)
    return dict(zip(pairs, mine.tolist(), strict=True))


def _pair_edges(
    subject: SubjectModel,
    saes: dict[int, TopKSAE],
    decoding: Decoding,
    lo: int,
    hi: int,
    targets: list[int],
) -> list[tuple[int, int, float]]:
    lo_nodes = _node_index(decoding, lo)
    leaves: dict[str, torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}
    codes = decoding.codes[lo]
    rewrite = splice(saes[lo], codes.values.clone(), codes.indices.clone(), leaves)

    def capture(x: torch.Tensor) -> torch.Tensor:
        captured["x"] = x[0]
        return x

    ids = torch.tensor([decoding.tokens], device=subject.device)
    edges: list[tuple[int, int, float]] = []
    with torch.enable_grad():
        subject.run_replaced(ids, {lo: rewrite, hi: capture})
        pre = saes[hi].pre_acts(captured["x"])
        for n, dst in enumerate(targets):
            node = decoding.nodes[dst]
            (grad,) = torch.autograd.grad(
                pre[node.ctx_idx, node.feature], [leaves["codes"]], retain_graph=n + 1 < len(targets)
            )
            weights = (leaves["codes"].detach() * grad).flatten()
            for flat in weights.abs().topk(min(EDGES_PER_NODE, weights.numel())).indices.tolist():
                pos, slot = divmod(flat, codes.indices.shape[1])
                src = lo_nodes.get((pos, int(codes.indices[pos, slot])))
                if src is not None and float(weights[flat]) != 0.0:
                    edges.append((src, dst, float(weights[flat])))
    return edges


def feature_edges(
    subject: SubjectModel,
    saes: dict[int, TopKSAE],
    decoding: Decoding,
    layers: tuple[int, ...],
    influence: torch.Tensor,
    max_targets: int,
) -> list[tuple[int, int, float]]:
    """Edges between the nodes of consecutive layers, for the most influential upper nodes."""
    ordered = sorted(layers)
    edges: list[tuple[int, int, float]] = []
    for lo, hi in itertools.pairwise(ordered):
        mine = decoding.nodes.at_layer(hi)
        upper = mine[influence[mine].abs().argsort(descending=True, stable=True)].tolist()
        edges += _pair_edges(subject, saes, decoding, lo, hi, upper[:max_targets])
    return edges
