"""The attribution graph as JSON, shaped like circuit-tracer / Neuronpedia graph files.

``metadata`` + ``nodes`` (node_id, feature, layer, ctx_idx, feature_type, activation, influence,
clerp) + ``links`` (source, target, weight), plus HIF's own keys: granularity, featureset,
degraded (ladder rungs applied) and attribution_method. Node kinds (``feature_type``):

- ``sae``: an SAE latent at a layer and a context position (a token, or a sentence);
- ``sae reconstruction error``: what the SAE missed at that layer and position;
- ``logit``: a target (a produced token's logit, or a sentence-to-prompt similarity).

Layers are strings as in Neuronpedia files ("4"; targets sit on layer "Lgt"). The published JSON
Schema is ``docs/schemas/graph.schema.json``; a change to a field updates it and ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Any

from hif.explainer.core.attribution import Attribution
from hif.explainer.core.decoding import Decoding
from hif.explainer.plan import Plan
from hif.store.base import Job

SCHEMA_VERSION = 1
FEATURE, ERROR, LOGIT = "sae", "sae reconstruction error", "logit"
FEATURE_TYPES = (FEATURE, ERROR, LOGIT)
TARGET_LAYER = "Lgt"


def _r(value: float) -> float:
    return round(float(value), 6)


def _feature_nodes(
    decoding: Decoding, attribution: Attribution, plan: Plan, labels: dict[int, dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """The top ``plan.max_nodes`` feature nodes by |influence|, with their index in decoding.nodes."""
    influence = attribution.influence.tolist()
    order = sorted(range(len(decoding.nodes)), key=lambda i: -abs(influence[i]))[: plan.max_nodes]
    out = []
    for i in sorted(
        order, key=lambda i: (decoding.nodes[i].layer, decoding.nodes[i].ctx_idx, -abs(influence[i]))
    ):
        node = decoding.nodes[i]
        label = (labels.get(node.layer) or {}).get(str(node.feature)) or {}
        out.append(
            (
                i,
                {
                    "node_id": f"{node.layer}_{node.feature}_{node.ctx_idx}",
                    "feature": node.feature,
                    "layer": str(node.layer),
                    "ctx_idx": node.ctx_idx,
                    "feature_type": FEATURE,
                    "activation": _r(node.activation),
                    "influence": _r(influence[i]),
                    "clerp": str(label.get("label") or f"latent {node.feature}"),
                },
            )
        )
    return out


def _error_nodes(attribution: Attribution) -> list[tuple[int, int, dict[str, Any]]]:
    out = []
    for layer, scores in attribution.error_scores.items():
        totals = scores.sum(-1).tolist()
        for ctx, total in enumerate(totals):
            if total == 0.0:
                continue  # no content token in this ctx (e.g. a special token)
            out.append(
                (
                    layer,
                    ctx,
                    {
                        "node_id": f"{layer}_error_{ctx}",
                        "feature": None,
                        "layer": str(layer),
                        "ctx_idx": ctx,
                        "feature_type": ERROR,
                        "activation": None,
                        "influence": _r(total),
                        "clerp": f"SAE reconstruction error, layer {layer}",
                    },
                )
            )
    return out


def _target_nodes(attribution: Attribution) -> list[dict[str, Any]]:
    return [
        {
            "node_id": f"target_{j}_{t.ctx_idx}",
            "feature": t.token,
            "layer": TARGET_LAYER,
            "ctx_idx": t.ctx_idx,
            "feature_type": LOGIT,
            "activation": _r(t.value),
            "influence": None,
            "clerp": t.label,
            "is_target_logit": True,
        }
        for j, t in enumerate(attribution.targets)
    ]


def _links(
    attribution: Attribution,
    features: list[tuple[int, dict[str, Any]]],
    errors: list[tuple[int, int, dict[str, Any]]],
    targets: list[dict[str, Any]],
    max_edges: int,
) -> list[dict[str, Any]]:
    links = []
    scores = attribution.node_scores
    for i, node in features:
        for j, weight in enumerate(scores[i].tolist()):
            if weight != 0.0:
                links.append(
                    {"source": node["node_id"], "target": targets[j]["node_id"], "weight": _r(weight)}
                )
    for layer, ctx, node in errors:
        for j, weight in enumerate(attribution.error_scores[layer][ctx].tolist()):
            if weight != 0.0:
                links.append(
                    {"source": node["node_id"], "target": targets[j]["node_id"], "weight": _r(weight)}
                )
    kept = {node["node_id"] for _, node in features}
    ids = {i: node["node_id"] for i, node in features}
    for src, dst, weight in attribution.feature_edges:
        if src in ids and dst in ids and ids[src] in kept and ids[dst] in kept:
            links.append({"source": ids[src], "target": ids[dst], "weight": _r(weight)})
    links.sort(key=lambda link: -abs(link["weight"]))
    return links[:max_edges]


def build(
    job: Job,
    decoding: Decoding,
    attribution: Attribution,
    plan: Plan,
    *,
    featureset: str,
    labels: dict[int, dict[str, Any]],
    tokens: list[str],
) -> dict[str, Any]:
    """The graph JSON for one job (a plain dict, ready for orjson)."""
    features = _feature_nodes(decoding, attribution, plan, labels)
    errors = _error_nodes(attribution)
    targets = _target_nodes(attribution)
    links = _links(attribution, features, errors, targets, plan.max_edges)
    return {
        "metadata": {
            "slug": job.trace_id,
            "scan": featureset,
            "schema_version": SCHEMA_VERSION,
            "prompt": decoding.extraction.encoded.text,
            "prompt_tokens": tokens,
            "completion_char": decoding.extraction.encoded.completion_char,
            "segments": [
                {"ctx_idx": s.index, "role": s.role, "text": s.text, "token_positions": list(s.positions)}
                for s in decoding.segments
            ],
            "node_threshold": plan.max_nodes,
            "info": {
                "top_k": plan.top_k,
                "layers": list(plan.layers),
                "max_nodes": plan.max_nodes,
                "max_edges": plan.max_edges,
                # The prompt's head was cut so the completion fits the model (core/model.py).
                **_trimmed(decoding.extraction.encoded.trimmed_prompt_tokens),
            },
        },
        "granularity": plan.granularity,
        "featureset": featureset,
        "degraded": list(plan.degraded),
        "attribution_method": attribution.method,
        "nodes": [node for _, node in features] + [node for _, _, node in errors] + targets,
        "links": links,
    }


def _trimmed(n: int) -> dict[str, int]:
    return {"prompt_tokens_trimmed": n} if n else {}
