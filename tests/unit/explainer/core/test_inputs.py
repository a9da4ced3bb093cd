"""Token -> feature (embedding) edges and the replacement / completeness scores: known answers first,
then the tiny GPT-2 pipeline's graphs (formats, caps, coverage)."""

from __future__ import annotations

import dataclasses

import jsonschema
import pytest
import torch

from hif.explainer.core import inputs
from hif.explainer.core.scores import graph_scores
from hif.explainer.plan import CAP_NODES, HEURISTIC
from tests.graph_formats import check_community_format, check_neuronpedia

PROMPT = "how do i use the file ?"
COMPLETION = "open returns a file object . close the file when done ."
ERROR = "sae reconstruction error"


def test_gradient_x_input_is_exact_on_an_affine_stream() -> None:
    """x[p] = sum_q mix[p, q] (emb[q] @ w) + c[p]: each edge is token q's exact share of the readout,
    and the edges sum to the readout less what the bias c and the offsets contribute."""
    gen = torch.Generator().manual_seed(0)
    t, d, n = 5, 4, 3
    mix, w, c = (
        torch.randn(t, t, generator=gen),
        torch.randn(d, d, generator=gen),
        torch.randn(t, d, generator=gen),
    )
    emb = torch.randn(t, d, generator=gen)
    directions, offsets = torch.randn(n, d, generator=gen), torch.randn(n, generator=gen)
    masks = torch.tensor([[0, 1, 0, 0, 0], [1, 0, 0, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.float)

    def forward(e: torch.Tensor) -> torch.Tensor:
        return torch.einsum("pq,bqd,de->bpe", mix, e, w) + c

    # chunk_rows=10: two readouts per pass, so the chunking is exercised too
    edges, y = inputs.gradient_x_input(forward, emb, directions, offsets, masks, chunk_rows=10)
    share = torch.einsum("pq,qe,je->jpq", mix, emb @ w, directions)  # token q's part of x[p] . dir_j
    expected = (masks[:, :, None] * share).sum(1)
    assert torch.allclose(edges, expected, atol=1e-5)
    bias = (masks * (c @ directions.t()).t()).sum(1) + offsets * masks.sum(1)
    assert torch.allclose(edges.sum(1), y - bias, atol=1e-5)
    readout = (masks * (forward(emb[None])[0] @ directions.t()).t()).sum(1) + offsets * masks.sum(1)
    assert torch.allclose(y, readout, atol=1e-5)


def test_scores_match_a_graph_worked_by_hand() -> None:
    """Two tokens, two features, one error node, two targets (p 0.6 and 0.4).

    Normalised rows: f1 <- E0 .25, E1 .75; f2 <- E1 1; y1 <- f1 .5, err .5; y2 <- f1 .25, f2 .25, err .5.
    Influence: f1 .4, f2 .1, err .5, E0 .1, E1 .4. Replacement .5 / (.5 + .5) = .5. Completeness:
    (.4 + .1 + .5 + .1 + .4 + .6 x .5 + .4 x .5) / (2.5) = .8."""
    kinds = {"E0": "embedding", "E1": "embedding", "f1": "sae", "f2": "sae", "err": ERROR}
    nodes = [{"node_id": k, "feature_type": v, "token_prob": 0.0} for k, v in kinds.items()]
    nodes += [{"node_id": "y1", "feature_type": "logit", "token_prob": 0.6}]
    nodes += [{"node_id": "y2", "feature_type": "logit", "token_prob": 0.4}]
    weights = [
        ("E0", "f1", 1.0),
        ("E1", "f1", -3.0),
        ("E1", "f2", 2.0),
        ("f1", "y1", 2.0),
        ("err", "y1", -2.0),
        ("f1", "y2", 1.0),
        ("f2", "y2", 1.0),
        ("err", "y2", 2.0),
    ]
    links = [{"source": s, "target": t, "weight": w} for s, t, w in weights]
    replacement, completeness = graph_scores(nodes, links)
    assert replacement == pytest.approx(0.5)
    assert completeness == pytest.approx(0.8)
    # no error node in the way: both scores are 1
    clean = [link for link in links if link["source"] != "err"]
    assert graph_scores(nodes, clean) == pytest.approx((1.0, 1.0))


def _run(pipeline, job, plan, method="gradient"):  # type: ignore[no-untyped-def]
    [extraction] = pipeline.extract([job], [plan])
    decoding = pipeline.decode(extraction, plan)
    attribution = (pipeline.attribute if method == "gradient" else pipeline.heuristic)(decoding, plan)
    return decoding, attribution, pipeline.graph(job, decoding, attribution, plan)


@pytest.mark.parametrize("granularity", ["sentence", "token"])
def test_graph_links_tokens_to_every_feature_and_scores_it(
    tiny_pipeline, make_job, graph_schema, granularity
) -> None:  # type: ignore[no-untyped-def]
    plan = tiny_pipeline.default_plan(granularity)
    plan = dataclasses.replace(plan, embedding_nodes=plan.max_nodes, max_edges=10_000)
    _, _, graph = _run(tiny_pipeline, make_job(PROMPT, COMPLETION, granularity), plan)
    jsonschema.validate(graph, graph_schema)
    check_community_format(graph)
    check_neuronpedia(graph)
    kinds = {n["node_id"]: n["feature_type"] for n in graph["nodes"]}
    features = [k for k, v in kinds.items() if v == "sae"]
    into: dict[str, int] = {}
    for link in graph["links"]:
        if kinds[link["source"]] == "embedding":
            assert kinds[link["target"]] == "sae"
            into[link["target"]] = into.get(link["target"], 0) + 1
    assert set(into) == set(features) and max(into.values()) <= inputs.EDGES_PER_NODE
    scores = graph["metadata"]["scores"]
    assert scores["embedding_links"]["feature_nodes"] == len(features)
    assert scores["embedding_links"]["frozen"] == [
        "LayerNorm scales",
        "MLP activation gates",
        "attention patterns",
    ]
    assert 0.0 < scores["replacement"] < 1.0 and 0.0 < scores["completeness"] < 1.0
    assert scores["scores_note"] is None


def test_readout_is_the_feature_pre_activation(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    """What the edges decompose is each node's pre-activation: for a firing TopK latent, its activation
    (summed over a sentence's tokens for a sentence node)."""
    for granularity in ("token", "sentence"):
        plan = tiny_pipeline.default_plan(granularity)
        decoding, attribution, _ = _run(tiny_pipeline, make_job(PROMPT, COMPLETION, granularity), plan)
        kept = list(range(len(decoding.nodes)))
        links = inputs.embedding_links(
            tiny_pipeline.subject, tiny_pipeline.saes, decoding, kept, attribution.influence.tolist(), 5
        )
        assert len(links.nodes) == 5 and links.candidates == len(decoding.nodes) > 5 and not links.complete
        acts = torch.tensor([decoding.nodes[i].activation for i in links.nodes])
        assert torch.allclose(links.pre_acts, acts, atol=1e-4)
        assert links.weights.shape == (5, len(decoding.tokens)) and links.weights.abs().sum() > 0
        # a causal LM: a token never feeds a feature at an earlier position
        if granularity == "token":
            for row, i in enumerate(links.nodes):
                assert float(links.weights[row, decoding.nodes[i].ctx_idx + 1 :].abs().sum()) < 1e-6


def test_partial_coverage_caps_and_switches(tiny_pipeline, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    job = make_job(PROMPT, COMPLETION, "token")
    partial = dataclasses.replace(tiny_pipeline.default_plan("token"), embedding_nodes=3)
    _, _, graph = _run(tiny_pipeline, job, partial)
    scores = graph["metadata"]["scores"]
    assert scores["embedding_links"]["feature_nodes"] == 3 and scores["replacement"] is None
    assert "3 of" in scores["scores_note"]
    # the link cap holds, and target links keep their place ahead of input links
    capped = partial.degrade(CAP_NODES, max_nodes=5, max_edges=7)
    _, _, small = _run(tiny_pipeline, job, dataclasses.replace(capped, embedding_nodes=5))
    jsonschema.validate(small, graph_schema)
    kinds = {n["node_id"]: n["feature_type"] for n in small["nodes"]}
    assert len(small["links"]) <= 7
    sources = [kinds[link["source"]] for link in small["links"]]
    first = sources.index("embedding") if "embedding" in sources else len(sources)
    assert first > 0 and set(sources[first:]) <= {"embedding"}
    assert sources.count("embedding") == 7 // 4  # the input links' floor: a quarter of the cap
    off = dataclasses.replace(tiny_pipeline.default_plan("token"), embedding_nodes=0)
    _, _, none = _run(tiny_pipeline, job, off)
    assert none["metadata"]["scores"]["embedding_links"].startswith("not computed")
    assert not any(link["source"].startswith("E_") for link in none["links"])
    _, _, heuristic = _run(tiny_pipeline, job, tiny_pipeline.default_plan("token"), HEURISTIC)
    assert heuristic["metadata"]["scores"]["replacement"] is None
    assert not any(link["source"].startswith("E_") for link in heuristic["links"])


def _hessian_vector(pipeline, decoding, freeze: bool) -> float:  # type: ignore[no-untyped-def]
    """max |d/de (grad_e y . v)|, y the first node's pre-activation, block 0 frozen or not."""
    subject, sae = pipeline.subject, pipeline.saes[0]
    ids = torch.tensor([decoding.tokens])
    emb = inputs.embeddings(subject, ids)[None].clone().requires_grad_(True)
    node = decoding.nodes[0]
    v = torch.randn(emb.shape, generator=torch.Generator().manual_seed(1))
    with inputs.frozen(subject.blocks[:1] if freeze else []), torch.enable_grad():
        x = inputs.stream(subject, ids, 0)(emb)
        y = sae.pre_acts(x[0, node.ctx_idx])[node.feature]
        (g,) = torch.autograd.grad(y, [emb], create_graph=True)
        if not g.requires_grad:
            return 0.0
        (h,) = torch.autograd.grad((g * v).sum(), [emb], allow_unused=True)
    return 0.0 if h is None else float(h.abs().max())


def test_the_local_replacement_model_is_affine(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    """With attention patterns, LayerNorm scales and activation gates frozen, a feature's pre-activation
    is affine in the embeddings (zero second derivative), so gradient x input is an exact split of it
    (less the biases' part); the real model's is not."""
    plan = tiny_pipeline.default_plan("token")
    decoding, _, _ = _run(tiny_pipeline, make_job(PROMPT, COMPLETION, "token"), plan)
    model = tiny_pipeline.subject.model
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")  # SDPA has no second derivative
    try:
        assert _hessian_vector(tiny_pipeline, decoding, freeze=True) < 1e-7
        assert _hessian_vector(tiny_pipeline, decoding, freeze=False) > 1e-4
    finally:
        model.set_attn_implementation(before)


def test_two_layer_graphs_link_tokens_to_the_lowest_layer_only(tiny_lm, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    """Each residual SAE cuts the stream: tokens reach layer 1 only through layer 0's nodes, so their
    direct links go to layer 0, and the scores (which would need every feature -> feature edge) are null."""
    from hif.explainer.core.pipeline import load_pipeline
    from hif.explainer.featureset import load_registry

    pipeline = load_pipeline(load_registry(tiny_lm.registry).get("tiny-gpt2-res01"), device="cpu", threads=1)
    plan = pipeline.default_plan("token")
    plan = dataclasses.replace(plan, embedding_nodes=plan.max_nodes, max_edges=10_000)
    _, _, graph = _run(pipeline, make_job(PROMPT, COMPLETION, "token"), plan)
    jsonschema.validate(graph, graph_schema)
    layer = {n["node_id"]: n["layer"] for n in graph["nodes"]}
    fed = {link["target"] for link in graph["links"] if link["source"].startswith("E_")}
    assert fed and {layer[node] for node in fed} == {"0"}
    assert {n["node_id"] for n in graph["nodes"] if n["layer"] == "0" and n["feature_type"] == "sae"} == fed
    scores = graph["metadata"]["scores"]
    assert scores["replacement"] is None and "several hook layers" in scores["scores_note"]
