"""The attribution graph as JSON in the community format (circuit-tracer's frontend, Neuronpedia).

``metadata`` + ``qParams`` + ``nodes`` + ``links`` as circuit-tracer's ``frontend/graph_models.py``
writes them, with its id conventions, plus HIF's own keys under names the viewers do not read
(``granularity``, ``featureset``, ``degraded``, ``attribution_method``, ``hif_*`` on nodes).

Node kinds (``feature_type``):

- ``embedding``: an input token (layer ``"E"``, id ``E_<vocab>_<pos>``);
- ``sae``: an SAE latent at a layer and token position (id ``<layer>_<latent>_<pos>``; ``feature`` is
  circuit-tracer's Cantor pairing of (layer, latent), so latents of different layers never collide);
- ``sae reconstruction error``: what the SAE missed at that layer and position (id ``err_<layer>_<pos>``);
- ``logit``: a target, on layer ``n_layers + 1`` as circuit-tracer names it (id ``<layer>_<vocab>_<pos>``;
  targets that are not a vocabulary token get circuit-tracer's virtual index ``vocab_size + j``).

``ctx_idx`` is always a token position: a sentence node sits at its sentence's last token.
``influence`` is the cumulative fraction of total |effect| reached when nodes are taken in order of
|effect| (the viewers keep nodes with ``influence <= node_threshold``). Links are direct effects only:
with several hook layers each residual SAE is a complete cut of the stream, so only the deepest layer
links to the targets and a lower layer links to the next layer's features (token graphs). Input tokens
link to the lowest layer's strongest features (``core/inputs.py``; their direct effect on a higher
layer is zero for the same reason), ``inputs.EDGES_PER_NODE`` links per feature drawn, in what the
link cap leaves after the target and feature links and at least a quarter of it.

``metadata.scores`` carries circuit-tracer's replacement and completeness scores (``core/scores.py``)
over all computed edges (before the link cap) when every feature node has its input edges and the
graph has one hook layer; otherwise they are null and ``scores_note`` says why.

The published JSON Schema is ``docs/schemas/graph.schema.json``; a change to a field updates it and
``SCHEMA_VERSION``. Graphs written before version 2 are served as stored (see ``metadata.schema_version``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from hif.explainer.core.attribution import Attribution, Target
from hif.explainer.core.decoding import Decoding
from hif.explainer.core.inputs import EDGES_PER_NODE, EmbeddingLinks
from hif.explainer.core.scores import graph_scores
from hif.explainer.plan import GRADIENT, Plan
from hif.store.base import Job

SCHEMA_VERSION = 3
EMBEDDING, FEATURE, ERROR, LOGIT = "embedding", "sae", "sae reconstruction error", "logit"
FEATURE_TYPES = (EMBEDDING, FEATURE, ERROR, LOGIT)
EMBEDDING_LAYER = "E"
NODE_THRESHOLD = 0.8  # the viewers' default pruning: keep the nodes carrying 80% of the influence
ENCODER_PROB = "(cosine + 1) / 2"
Q_PARAMS: dict[str, Any] = {
    "pinnedIds": [],
    "supernodes": [],
    "linkType": "both",
    "clickedId": "",
    "sg_pos": "",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Subject:
    """What the graph says about the model it explains."""

    name: str
    kind: str  # "encoder" | "causal-lm"
    n_layers: int
    vocab_size: int


def cantor(x: int, y: int) -> int:
    """circuit-tracer's unique integer for a (layer, latent) pair."""
    return (x + y) * (x + y + 1) // 2 + y


def _r(value: float) -> float:
    return round(float(value), 6)


def _rounded(values: torch.Tensor) -> list[Any]:
    """``_r`` over a whole tensor (as nested lists): the same numbers, one call instead of one per
    value, which a graph's thousand links make worth it."""
    return torch.round(values.double(), decimals=6).tolist()


def _ctx(decoding: Decoding, ctx: int) -> int:
    """A node's token position: itself at token granularity, its segment's last token otherwise."""
    return ctx if decoding.granularity == "token" else decoding.segments[ctx].positions[-1]


def _cumulative(scores: dict[str, float]) -> dict[str, float]:
    """Each node's cumulative share of the total |score|, nodes taken from the largest down."""
    total = sum(scores.values()) or 1.0
    out, running = {}, 0.0
    for key in sorted(scores, key=lambda k: -scores[k]):
        running += scores[key]
        out[key] = _r(min(1.0, running / total))
    return out


def kept_nodes(decoding: Decoding, attribution: Attribution, plan: Plan) -> list[int]:
    """Indices (in decoding.nodes) of the graph's feature nodes: the top ``plan.max_nodes`` by |effect|."""
    # A stable sort keeps ties in table order, so the same job always keeps the same nodes.
    order = attribution.influence.abs().argsort(descending=True, stable=True)
    return order[: plan.max_nodes].tolist()


def _feature_nodes(
    decoding: Decoding, attribution: Attribution, plan: Plan, labels: dict[int, dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """The top ``plan.max_nodes`` feature nodes by |effect|, with their index in decoding.nodes."""
    effect = attribution.influence.tolist()
    order = kept_nodes(decoding, attribution, plan)
    kept = dict(zip(order, decoding.nodes.rows(order), strict=True))
    out = []
    for i in sorted(kept, key=lambda i: (kept[i].layer, kept[i].ctx_idx, -abs(effect[i]))):
        node = kept[i]
        pos = _ctx(decoding, node.ctx_idx)
        label = (labels.get(node.layer) or {}).get(str(node.feature)) or {}
        node_id = f"{node.layer}_{node.feature}_{pos}"
        out.append(
            (
                i,
                {
                    "node_id": node_id,
                    "jsNodeId": f"{node.layer}_{node.feature}-0",
                    "feature": cantor(node.layer, node.feature),
                    "layer": str(node.layer),
                    "ctx_idx": pos,
                    "feature_type": FEATURE,
                    "token_prob": 0.0,
                    "is_target_logit": False,
                    "run_idx": 0,
                    "reverse_ctx_idx": 0,
                    "activation": _r(node.activation),
                    "influence": None,
                    "clerp": str(label.get("label") or f"latent {node.feature} (layer {node.layer})"),
                    "hif_latent": node.feature,
                    # The label's held-out score (training/labels.py); null where labels predate scoring.
                    "hif_label_score": label.get("score"),
                    "hif_effect": _r(effect[i]),
                    "hif_method": attribution.method,  # "heuristic" marks a fallback-scored node
                },
            )
        )
    return out


def _error_nodes(decoding: Decoding, attribution: Attribution) -> list[tuple[int, int, dict[str, Any]]]:
    out = []
    for layer, scores in attribution.error_scores.items():
        for ctx, total in enumerate(scores.sum(-1).tolist()):
            if total == 0.0:
                continue  # no content token in this ctx (e.g. a special token)
            pos = _ctx(decoding, ctx)
            node = {
                "node_id": f"err_{layer}_{pos}",
                "jsNodeId": f"err_{layer}_{pos}-0",
                "feature": -1,
                "layer": str(layer),
                "ctx_idx": pos,
                "feature_type": ERROR,
                "token_prob": 0.0,
                "is_target_logit": False,
                "run_idx": 0,
                "reverse_ctx_idx": 0,
                "activation": None,
                "influence": None,
                "clerp": f"SAE reconstruction error, layer {layer}",
                "hif_effect": _r(total),
                "hif_method": attribution.method,  # "heuristic" marks a fallback-scored node
            }
            out.append((layer, ctx, node))
    return out


def _embedding_nodes(decoding: Decoding, tokens: list[str]) -> list[dict[str, Any]]:
    # Every position, special tokens too: each is part of the input that token -> feature edges decompose.
    return [
        {
            "node_id": f"E_{vocab}_{pos}",
            "jsNodeId": f"E_{vocab}-{pos}",
            "feature": pos,
            "layer": EMBEDDING_LAYER,
            "ctx_idx": pos,
            "feature_type": EMBEDDING,
            "token_prob": 0.0,
            "is_target_logit": False,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "activation": None,
            "influence": None,
            "clerp": f'Emb: "{_quote_safe(tokens[pos])}"',
        }
        for pos, vocab in enumerate(decoding.tokens)
    ]


def _quote_safe(text: str) -> str:
    # Both viewers split a logit clerp on '"' and '(p=': a label must contain neither.
    return text.replace('"', "'").replace("(p=", "(p =")


def _target_prob(target: Target, subject: Subject) -> float:
    if subject.kind == "encoder":
        return min(1.0, max(0.0, (target.value + 1.0) / 2.0))
    return float(target.prob or 0.0)


def _target_nodes(
    decoding: Decoding, attribution: Attribution, subject: Subject, tokens: list[str]
) -> list[dict[str, Any]]:
    layer, n = str(subject.n_layers + 1), len(decoding.tokens)
    out = []
    for j, t in enumerate(attribution.targets):
        if t.token is not None:  # a produced token's logit, read at the position before it
            vocab, pos, text = t.token, max(0, t.ctx_idx - 1), tokens[t.ctx_idx]
        elif len(t.positions) == 1 and t.positions[0] >= n:  # the model's own next token
            vocab, pos, text = subject.vocab_size + j, n - 1, "next token"
        else:  # a sentence target: circuit-tracer's virtual index, at the sentence's last token
            vocab, pos, text = subject.vocab_size + j, max(p for p in t.positions if p < n), t.label
        prob = _target_prob(t, subject)
        out.append(
            {
                "node_id": f"{layer}_{vocab}_{pos}",
                "jsNodeId": f"L_{vocab}-{pos}",
                "feature": vocab,
                "layer": layer,
                "ctx_idx": pos,
                "feature_type": LOGIT,
                "token_prob": _r(prob),
                "is_target_logit": True,
                "run_idx": 0,
                "reverse_ctx_idx": 0,
                "activation": _r(t.value),
                "influence": None,
                "clerp": f'Output "{_quote_safe(text)}" (p={prob:.3f})',
                "hif_target": t.label,
                "hif_target_value": _r(t.value),
            }
        )
    return out


def _links(
    attribution: Attribution,
    features: list[tuple[int, dict[str, Any]]],
    errors: list[tuple[int, int, dict[str, Any]]],
    targets: list[dict[str, Any]],
    plan: Plan,
    layer_of: list[int],
) -> list[dict[str, Any]]:
    """Direct effects: the deepest layer's nodes -> targets, each layer's features -> the next's."""
    deepest = max(plan.layers)
    target_ids = [t["node_id"] for t in targets]
    top = [(i, node) for i, node in features if layer_of[i] == deepest]
    # One gather and one tolist for all rows: indexing the tensor per node costs more than the links.
    raw = attribution.node_scores[[i for i, _ in top]] if top else attribution.node_scores[:0]
    sources = [node["node_id"] for _, node in top]
    errors_at = [(ctx, node) for layer, ctx, node in errors if layer == deepest]
    if errors_at:
        raw = torch.cat([raw, attribution.error_scores[deepest][[ctx for ctx, _ in errors_at]]])
        sources += [node["node_id"] for _, node in errors_at]
    # A weight is drawn when it is non-zero before rounding (a tiny effect still links).
    present, rows = (raw != 0).tolist(), _rounded(raw)
    links = [
        {"source": source, "target": target_ids[j], "weight": weight}
        for source, row, keep in zip(sources, rows, present, strict=True)
        for j, weight in enumerate(row)
        if keep[j]
    ]
    ids = {i: node["node_id"] for i, node in features}
    for src, dst, weight in attribution.feature_edges:
        if src in ids and dst in ids:
            links.append({"source": ids[src], "target": ids[dst], "weight": _r(weight)})
    links.sort(key=lambda link: -abs(link["weight"]))
    return links


def _input_links(
    embedding: EmbeddingLinks | None, features: list[tuple[int, dict[str, Any]]], decoding: Decoding
) -> list[list[dict[str, Any]]]:
    """Per feature node with input edges: its token -> feature links, largest |weight| first."""
    if embedding is None:
        return []
    ids = {i: node["node_id"] for i, node in features}
    out = []
    for row, i in enumerate(embedding.nodes):
        if i not in ids:
            continue
        weights = embedding.weights[row].tolist()
        order = sorted(range(len(weights)), key=lambda q: -abs(weights[q]))
        out.append(
            [
                {"source": f"E_{decoding.tokens[q]}_{q}", "target": ids[i], "weight": _r(weights[q])}
                for q in order
                if _r(weights[q]) != 0.0
            ]
        )
    return out


def _drawn(
    target_links: list[dict[str, Any]], inputs: list[list[dict[str, Any]]], cap: int
) -> list[dict[str, Any]]:
    """Within ``cap``: the strongest ``EDGES_PER_NODE`` input links of each feature take what the target
    and feature links leave, and at least a quarter of the cap (the graph is about the targets, but
    a token graph's target links alone can fill it); target and feature links the rest."""
    extra = [link for per_node in inputs for link in per_node[:EDGES_PER_NODE]]
    extra.sort(key=lambda link: -abs(link["weight"]))
    room = min(len(extra), max(cap - len(target_links), cap // 4))
    return target_links[: cap - room] + extra[:room]


def _scores(
    nodes: list[dict[str, Any]],
    links: list[dict[str, Any]],
    embedding: EmbeddingLinks | None,
    attribution: Attribution,
    plan: Plan,
) -> dict[str, Any]:
    why = None
    if attribution.method != GRADIENT:
        why = "heuristic attribution: no input edges"
    elif embedding is None or not embedding.nodes:
        why = "input edges not computed (see embedding_links)"
    elif not embedding.complete:
        why = (
            f"input edges computed for {len(embedding.nodes)} of {embedding.candidates} feature nodes "
            "(plan.embedding_nodes): the scores need them all"
        )
    elif len(plan.layers) > 1:
        why = "several hook layers: feature -> feature edges cover only the strongest upper nodes"
    if why is not None:
        return {"replacement": None, "completeness": None, "scores_note": why}
    replacement, completeness = graph_scores(nodes, links)
    return {"replacement": _r(replacement), "completeness": _r(completeness), "scores_note": None}


def _embedding_meta(
    embedding: EmbeddingLinks | None, attribution: Attribution, plan: Plan
) -> dict[str, Any] | str:
    if attribution.method != GRADIENT:
        return "not computed (heuristic attribution)"
    if plan.embedding_nodes <= 0:
        return "not computed (switched off: plan.embedding_nodes is 0)"
    if embedding is None or not embedding.nodes:
        return "not computed (failed: see the explainer's log)"
    return {
        "method": "gradient x input at the input of block 0, attention patterns, LayerNorm scales and "
        "MLP activation gates frozen (a local replacement model, as circuit-tracer's)",
        "frozen": list(embedding.frozen),
        "layer": embedding.layer,
        "feature_nodes": len(embedding.nodes),
        "of_feature_nodes": embedding.candidates,
        "links_per_node": EDGES_PER_NODE,
    }


def _metadata(
    job: Job,
    decoding: Decoding,
    attribution: Attribution,
    plan: Plan,
    subject: Subject,
    featureset: str,
    tokens: list[str],
    embedding: EmbeddingLinks | None,
) -> dict[str, Any]:
    encoder = subject.kind == "encoder"
    return {
        "slug": job.trace_id,
        "scan": featureset,
        "transcoder_list": [f"{featureset}/layer_{layer}" for layer in plan.layers],
        "prompt_tokens": tokens,
        "prompt": decoding.extraction.encoded.text,
        "node_threshold": NODE_THRESHOLD,
        "schema_version": SCHEMA_VERSION,
        "completion_char": decoding.extraction.encoded.completion_char,
        "segments": [
            {
                "index": s.index,
                "role": s.role,
                "text": s.text,
                "token_positions": list(s.positions),
                "ctx_idx": s.positions[-1],
            }
            for s in decoding.segments
        ],
        "subject_model": {"name": subject.name, "kind": subject.kind, "n_layers": subject.n_layers},
        "featureset": featureset,
        "attribution_method": attribution.method,
        "target": {
            "definition": (
                "cosine similarity of each completion sentence's mean-pooled last hidden state to the "
                "prompt's (no vocabulary token: a virtual logit)"
                if encoder
                else "logit of each completion token under teacher forcing (sentence granularity: their "
                "mean per sentence)"
            ),
            "token_prob": ENCODER_PROB if encoder else "softmax probability of the target token",
        },
        "scores": {
            "link_weight": "gradient x activation"
            if attribution.method == GRADIENT
            else "activation x cos(decoder row, target direction)",
            "comparable_to_gradient": attribution.method == GRADIENT,
            "embedding_links": _embedding_meta(embedding, attribution, plan),
        },
        "generation_settings": {
            "granularity": plan.granularity,
            "layers": list(plan.layers),
            "top_k": plan.top_k,
        },
        "pruning_settings": {
            "node_threshold": NODE_THRESHOLD,
            "max_feature_nodes": plan.max_nodes,
            "max_links": plan.max_edges,
            "input_links_per_feature": EDGES_PER_NODE,
            "max_features_with_input_links": plan.embedding_nodes,
        },
        "info": {
            "top_k": plan.top_k,
            "layers": list(plan.layers),
            "max_nodes": plan.max_nodes,
            "max_edges": plan.max_edges,
            # The prompt's head was cut so the completion fits the model (core/model.py).
            **_trimmed(decoding.extraction.encoded.trimmed_prompt_tokens),
        },
    }


def build(
    job: Job,
    decoding: Decoding,
    attribution: Attribution,
    plan: Plan,
    *,
    featureset: str,
    labels: dict[int, dict[str, Any]],
    tokens: list[str],
    subject: Subject,
    embedding: EmbeddingLinks | None = None,
) -> dict[str, Any]:
    """The graph JSON for one job (a plain dict, ready for orjson). ``plan.degraded`` is the job's;
    ``embedding`` the token -> feature edges (``core/inputs.py``), if computed."""
    features = _feature_nodes(decoding, attribution, plan, labels)
    errors = _error_nodes(decoding, attribution)
    targets = _target_nodes(decoding, attribution, subject, tokens)
    layer_of = decoding.nodes.layer.tolist()
    links = _links(attribution, features, errors, targets, plan, layer_of)
    inputs = _input_links(embedding, features, decoding)
    scored = [node for _, node in features] + [node for _, _, node in errors]
    cumulative = _cumulative({node["node_id"]: abs(node["hif_effect"]) for node in scored})
    for node in scored:
        node["influence"] = cumulative[node["node_id"]]
    nodes = _embedding_nodes(decoding, tokens) + scored + targets
    metadata = _metadata(job, decoding, attribution, plan, subject, featureset, tokens, embedding)
    metadata["scores"].update(
        _scores(
            nodes, links + [link for per_node in inputs for link in per_node], embedding, attribution, plan
        ),
        pruned_features=_pruned(attribution, [i for i, _ in features]),
    )
    return {
        "metadata": metadata,
        "qParams": dict(Q_PARAMS),
        "nodes": nodes,
        "links": _drawn(links, inputs, plan.max_edges),
        "granularity": plan.granularity,
        "featureset": featureset,
        "degraded": list(plan.degraded),
        "attribution_method": attribution.method,
    }


def _pruned(attribution: Attribution, kept: list[int]) -> dict[str, Any]:
    """What the node cap left out: candidate feature nodes, those kept, and the share of the total
    |effect| (every candidate feature plus the error nodes) that the pruned ones carried."""
    effect = attribution.influence.abs()
    errors = sum(float(e.sum(-1).abs().sum()) for e in attribution.error_scores.values())
    total = float(effect.sum()) + errors
    pruned = float(effect.sum()) - float(effect[kept].sum()) if kept else float(effect.sum())
    return {
        "candidates": int(effect.shape[0]),
        "kept": len(kept),
        "effect_share": _r(pruned / total) if total > 0 else 0.0,
    }


def _trimmed(n: int) -> dict[str, int]:
    return {"prompt_tokens_trimmed": n} if n else {}


__all__ = ["FEATURE_TYPES", "SCHEMA_VERSION", "Subject", "build", "cantor", "kept_nodes"]
