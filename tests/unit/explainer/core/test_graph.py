"""Decode aggregation, the node/edge budget and the graph JSON against its schema (tiny GPT-2)."""

from __future__ import annotations

import dataclasses

import jsonschema
import orjson
import pytest
import torch

from hif.explainer import graphfile
from hif.explainer.core import graph as graph_module
from hif.explainer.plan import CAP_NODES, GRADIENT, HEURISTIC, REDUCE_TOPK
from tests.graph_formats import check_community_format, check_neuronpedia

PROMPT = "how do i use the file ?"
COMPLETION = "open returns a file object . close the file when done ."


def _run(pipeline, job, plan, method="gradient"):  # type: ignore[no-untyped-def]
    [extraction] = pipeline.extract([job], [plan])
    decoding = pipeline.decode(extraction, plan)
    fn = pipeline.attribute if method == "gradient" else pipeline.heuristic
    attribution = fn(decoding, plan)
    return decoding, attribution, pipeline.graph(job, decoding, attribution, plan)


def test_token_nodes_are_the_per_token_top_k(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    plan = dataclasses.replace(tiny_pipeline.default_plan("token"), top_k=2)
    decoding, _, _ = _run(tiny_pipeline, make_job(PROMPT, COMPLETION, "token"), plan)
    codes = decoding.codes[0]
    for pos in range(len(decoding.tokens)):
        mine = sorted((n.feature, n.activation) for n in decoding.nodes if n.ctx_idx == pos)
        values, indices = codes.values[pos, :2], codes.indices[pos, :2]
        expect = sorted((int(f), float(a)) for f, a in zip(indices, values, strict=True) if a > 0)
        assert mine == [(f, pytest.approx(a)) for f, a in expect]


def test_sentence_nodes_sum_activations_over_the_sentence(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    plan = tiny_pipeline.default_plan("sentence")
    decoding, _, _ = _run(tiny_pipeline, make_job(PROMPT, COMPLETION), plan)
    assert [s.role for s in decoding.segments] == ["prompt", "completion", "completion"]
    codes = decoding.codes[0]
    for node in decoding.nodes:
        seg = decoding.segments[node.ctx_idx]
        dense = torch.zeros(64)
        for pos in seg.positions:
            dense.index_add_(0, codes.indices[pos], codes.values[pos])
        assert node.activation == pytest.approx(float(dense[node.feature]), rel=1e-5)
    # every latent that fires in a sentence is a candidate node (the graph prunes by effect later)
    found = {(n.ctx_idx, n.feature) for n in decoding.nodes}
    for seg in decoding.segments:
        rows = list(seg.positions)
        fired = set(codes.indices[rows][codes.values[rows] > 0].tolist())
        assert {f for s, f in found if s == seg.index} == fired


def test_sentence_error_nodes_are_reconstruction_error_only(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    """A sentence's error node is its tokens' reconstruction-error effect summed (no pruned latents
    folded in), and the candidate nodes plus the errors carry the layer's whole effect."""
    from hif.explainer.core import attribution as attr

    plan = tiny_pipeline.default_plan("sentence")
    decoding, attribution, _ = _run(tiny_pipeline, make_job(PROMPT, COMPLETION), plan)
    targets = attr.target_specs(decoding, tiny_pipeline.subject.kind)
    feat, err, _ = attr.gradient_layer(tiny_pipeline.subject, tiny_pipeline.saes[0], decoding, 0, targets)
    in_segments = attr._groups(decoding) >= 0
    for seg in decoding.segments:
        expected = err[:, list(seg.positions)].sum(-1)
        torch.testing.assert_close(attribution.error_scores[0][seg.index], expected, rtol=1e-4, atol=1e-6)
    whole = feat[:, in_segments].sum((1, 2)) + err[:, in_segments].sum(-1)
    shown = attribution.node_scores.sum(0) + attribution.error_scores[0].sum(0)
    torch.testing.assert_close(shown, whole, rtol=1e-4, atol=1e-6)


def test_graph_respects_node_and_edge_budgets(tiny_pipeline, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    plan = tiny_pipeline.default_plan("token").degrade(CAP_NODES, max_nodes=5, max_edges=7)
    _, attribution, graph = _run(tiny_pipeline, make_job(PROMPT, COMPLETION, "token"), plan)
    jsonschema.validate(graph, graph_schema)
    features = [n for n in graph["nodes"] if n["feature_type"] == "sae"]
    assert len(features) == 5 and len(graph["links"]) <= 7
    kept = sorted(abs(n["hif_effect"]) for n in features)
    assert kept[0] >= float(attribution.influence.abs().sort(descending=True).values[4]) - 1e-6
    assert graph["degraded"] == [CAP_NODES]
    ids = {n["node_id"] for n in graph["nodes"]}
    assert all(link["source"] in ids and link["target"] in ids for link in graph["links"])


def test_graph_records_plan_method_and_errors(tiny_pipeline, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    plan = tiny_pipeline.default_plan("sentence").degrade(REDUCE_TOPK, top_k=2)
    _, _, graph = _run(tiny_pipeline, make_job(PROMPT, COMPLETION), plan, method=HEURISTIC)
    jsonschema.validate(graph, graph_schema)
    assert graph["attribution_method"] == HEURISTIC and graph["degraded"] == [REDUCE_TOPK]
    assert graph["metadata"]["info"]["top_k"] == 2 and graph["featureset"] == "tiny-gpt2-res0"
    errors = [n for n in graph["nodes"] if n["feature_type"] == "sae reconstruction error"]
    sentence_ends = {s["ctx_idx"] for s in graph["metadata"]["segments"]}
    assert sentence_ends == {s["token_positions"][-1] for s in graph["metadata"]["segments"]}
    assert errors and all(n["ctx_idx"] in sentence_ends for n in errors)
    scored = [n for n in graph["nodes"] if n["feature_type"] in ("sae", "sae reconstruction error")]
    assert all(n["hif_method"] == HEURISTIC for n in scored)
    assert graph["metadata"]["scores"]["comparable_to_gradient"] is False
    # the SAE encoded with k=2: a sentence holds at most 2 latents per token
    tokens = {s["ctx_idx"]: len(s["token_positions"]) for s in graph["metadata"]["segments"]}
    per_ctx: dict[int, int] = {}
    for n in graph["nodes"]:
        if n["feature_type"] == "sae":
            per_ctx[n["ctx_idx"]] = per_ctx.get(n["ctx_idx"], 0) + 1
    assert per_ctx and all(count <= 2 * tokens[ctx] for ctx, count in per_ctx.items())
    pruned = graph["metadata"]["scores"]["pruned_features"]
    assert pruned["kept"] == sum(per_ctx.values()) <= pruned["candidates"]
    assert 0.0 <= pruned["effect_share"] < 1.0


def test_published_schema_matches_the_graph_builder(graph_schema) -> None:  # type: ignore[no-untyped-def]
    """docs/schemas/graph.schema.json is the contract: the builder's constants must agree with it."""
    meta = graph_schema["properties"]["metadata"]["properties"]
    assert meta["schema_version"] == {"const": graph_module.SCHEMA_VERSION}
    node = graph_schema["properties"]["nodes"]["items"]["properties"]
    assert tuple(node["feature_type"]["enum"]) == graph_module.FEATURE_TYPES
    assert graph_schema["properties"]["attribution_method"]["enum"] == [GRADIENT, HEURISTIC]
    assert graph_module.EMBEDDING_LAYER in node["layer"]["pattern"]


def test_schema_rejects_a_broken_graph(tiny_pipeline, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    _, _, graph = _run(tiny_pipeline, make_job(PROMPT, COMPLETION), tiny_pipeline.default_plan("sentence"))
    broken = {**graph, "nodes": [{k: v for k, v in graph["nodes"][0].items() if k != "ctx_idx"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, graph_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**graph, "attribution_method": "guess"}, graph_schema)


def test_extract_batches_jobs_like_single_runs(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    jobs = [make_job(PROMPT, COMPLETION), make_job("why ?", "the loop ends ."), make_job(PROMPT, "it is .")]
    plans = [tiny_pipeline.default_plan("sentence")] * 3
    batched = tiny_pipeline.extract(jobs, plans)
    for job, plan, got in zip(jobs, plans, batched, strict=True):
        [alone] = tiny_pipeline.extract([job], [plan])
        assert got.job is job
        assert torch.allclose(got.hidden[0], alone.hidden[0], atol=1e-5)


@pytest.mark.parametrize("granularity", ["sentence", "token"])
@pytest.mark.parametrize("method", [GRADIENT, HEURISTIC])
def test_graphs_are_in_the_community_format(
    tiny_pipeline, make_job, graph_schema, granularity, method
) -> None:  # type: ignore[no-untyped-def]
    plan = tiny_pipeline.default_plan(granularity)
    if method == HEURISTIC:
        plan = plan.degrade(REDUCE_TOPK, top_k=2)  # a degraded graph too
    _, _, graph = _run(tiny_pipeline, make_job(PROMPT, COMPLETION, granularity), plan, method)
    jsonschema.validate(graph, graph_schema)
    check_community_format(graph)
    meta = graph["metadata"]
    assert meta["subject_model"]["kind"] == "causal-lm" and meta["featureset"] == "tiny-gpt2-res0"
    assert meta["attribution_method"] == method and graph["degraded"] == list(plan.degraded)
    tokens = meta["prompt_tokens"]
    embeddings = [n for n in graph["nodes"] if n["feature_type"] == "embedding"]
    assert [n["ctx_idx"] for n in embeddings] == list(range(len(tokens)))  # special tokens too
    # every feature/error node: the cumulative |effect| share, ranked like |effect|
    scored = [n for n in graph["nodes"] if n["feature_type"] in ("sae", "sae reconstruction error")]
    ranked = sorted(scored, key=lambda n: n["influence"])
    effects = [abs(n["hif_effect"]) for n in ranked]
    assert effects == sorted(effects, reverse=True)
    assert ranked[-1]["influence"] == pytest.approx(1.0)
    total = sum(effects)
    assert ranked[0]["influence"] == pytest.approx(effects[0] / total, abs=1e-5)
    for n in scored:
        if n["feature_type"] == "sae":
            layer, latent, pos = n["node_id"].split("_")
            assert n["feature"] == graph_module.cantor(int(layer), int(latent)) and int(pos) == n["ctx_idx"]


def test_sentence_nodes_sit_at_their_sentences_last_token(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    plan = tiny_pipeline.default_plan("sentence")
    decoding, _, graph = _run(tiny_pipeline, make_job(PROMPT, COMPLETION), plan)
    by_id = {n["node_id"]: n for n in graph["nodes"]}
    for node in decoding.nodes:
        pos = decoding.segments[node.ctx_idx].positions[-1]
        found = by_id.get(f"{node.layer}_{node.feature}_{pos}")
        assert found is None or found["ctx_idx"] == pos


def test_reduce_topk_encodes_with_the_smaller_k_and_stays_complete(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    full = tiny_pipeline.default_plan("token")
    reduced = full.degrade(REDUCE_TOPK, top_k=2)
    job = make_job(PROMPT, COMPLETION, "token")
    [extraction] = tiny_pipeline.extract([job], [reduced])
    decoding = tiny_pipeline.decode(extraction, reduced)
    sae, codes, x = tiny_pipeline.saes[0], decoding.codes[0], extraction.hidden[0]
    assert codes.values.shape[1] == 2 < full.top_k  # the SAE really ran with k=2
    # complete: codes + error rebuild the residual exactly, the dropped latents sit in the error
    assert torch.allclose(sae.decode_sparse(codes.values, codes.indices) + codes.error, x, atol=1e-5)
    full_decoding = tiny_pipeline.decode(extraction, full)
    content = decoding.content
    assert codes.error[content].norm() > full_decoding.codes[0].error[content].norm()
    # and attribution stays complete: feature + error effects are computed on the k=2 codes
    attribution = tiny_pipeline.attribute(decoding, reduced)
    assert attribution.node_scores.shape[0] == len(decoding.nodes)
    assert all(n.activation > 0 for n in decoding.nodes)
    assert len(decoding.nodes) <= 2 * int(content.sum())


def test_degraded_in_the_graph_is_what_the_handler_records(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    """A chaos-style gradient failure: the status's `degraded` and the graph's must agree."""
    import threading

    from hif.errors import AttributionError
    from hif.explainer.service import handler as handler_module
    from hif.store.base import Lease

    class Blobs:
        def __init__(self) -> None:
            self.data: dict[str, bytes] = {}

        def put(self, key: str, data: bytes) -> None:
            self.data[key] = data

    class Sink:
        def record(self, *args: object, **kwargs: object) -> None:
            pass

    def failing(task, decoded):  # type: ignore[no-untyped-def]
        return handler_module.fall_back(task, decoded, AttributionError("injected"))

    job = make_job(PROMPT, COMPLETION)
    plan = tiny_pipeline.default_plan("sentence").degrade(REDUCE_TOPK, top_k=2)
    stages = handler_module.Stages(decode=handler_module.decode, attribution=failing)
    from hif.explainer.settings import ExplainerSettings

    blobs = Blobs()
    handler = handler_module.Handler(
        blobs=blobs,
        pipelines=lambda _: tiny_pipeline,
        settings=ExplainerSettings(),
        sink=Sink(),
        stages=stages,
    )
    lease = Lease(job=job, lease_id="l", consumer="c", attempt=1, deadline=float("inf"))
    task = handler_module.Task(
        lease=lease,
        plan=plan,
        pipeline=tiny_pipeline,
        level="soft",
        stop=threading.Event(),
        degraded=plan.degraded,
    )
    [extraction] = handler.extract([task])
    ending = handler.explain(task, extraction)
    graph = orjson.loads(graphfile.decode(blobs.data[ending.fields["graph_key"]]))
    assert list(task.degraded) == [REDUCE_TOPK, handler_module.ATTRIBUTION_FALLBACK]
    assert graph["degraded"] == list(task.degraded) and graph["attribution_method"] == HEURISTIC


def test_the_neuronpedia_check_refuses_what_its_schema_refuses(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    plan = tiny_pipeline.default_plan("sentence")
    _, _, graph = _run(tiny_pipeline, make_job(PROMPT, COMPLETION, "sentence"), plan, GRADIENT)
    check_neuronpedia(graph)
    node = graph["nodes"][0]
    for broken in (
        {**graph, "qParams": None},
        {**graph, "metadata": {k: v for k, v in graph["metadata"].items() if k != "scan"}},
        {**graph, "nodes": [{k: v for k, v in node.items() if k != "jsNodeId"}]},
        {**graph, "nodes": [{**node, "feature": "17"}]},
        {**graph, "links": [{"source": "a", "target": "b"}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            check_neuronpedia(broken)
