"""Decode aggregation, the node/edge budget and the graph JSON against its schema (tiny GPT-2)."""

from __future__ import annotations

import dataclasses

import jsonschema
import pytest
import torch

from hif.explainer.core import graph as graph_module
from hif.explainer.plan import CAP_NODES, GRADIENT, HEURISTIC, REDUCE_TOPK

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
        assert node.activation >= float(dense.topk(plan.top_k).values[-1]) - 1e-6


def test_graph_respects_node_and_edge_budgets(tiny_pipeline, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    plan = tiny_pipeline.default_plan("token").degrade(CAP_NODES, max_nodes=5, max_edges=7)
    _, attribution, graph = _run(tiny_pipeline, make_job(PROMPT, COMPLETION, "token"), plan)
    jsonschema.validate(graph, graph_schema)
    features = [n for n in graph["nodes"] if n["feature_type"] == "sae"]
    assert len(features) == 5 and len(graph["links"]) <= 7
    kept = sorted(abs(n["influence"]) for n in features)
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
    assert errors and all(n["ctx_idx"] < len(graph["metadata"]["segments"]) for n in errors)
    per_ctx: dict[int, int] = {}
    for n in graph["nodes"]:
        if n["feature_type"] == "sae":
            per_ctx[n["ctx_idx"]] = per_ctx.get(n["ctx_idx"], 0) + 1
    assert per_ctx and max(per_ctx.values()) <= 2


def test_published_schema_matches_the_graph_builder(graph_schema) -> None:  # type: ignore[no-untyped-def]
    """docs/schemas/graph.schema.json is the contract: the builder's constants must agree with it."""
    meta = graph_schema["properties"]["metadata"]["properties"]
    assert meta["schema_version"] == {"const": graph_module.SCHEMA_VERSION}
    node = graph_schema["properties"]["nodes"]["items"]["properties"]
    assert tuple(node["feature_type"]["enum"]) == graph_module.FEATURE_TYPES
    assert graph_schema["properties"]["attribution_method"]["enum"] == [GRADIENT, HEURISTIC]
    assert graph_module.TARGET_LAYER in node["layer"]["pattern"]


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
