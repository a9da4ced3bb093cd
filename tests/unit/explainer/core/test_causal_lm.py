"""Any Hugging Face causal LM on disk + an SAELens-layout SAE: a tiny random GPT-2, logit targets."""

from __future__ import annotations

import dataclasses

import jsonschema
import pytest
import torch

from hif.errors import AttributionError
from hif.explainer.core.attribution import gradient_layer, target_specs, target_values
from hif.explainer.plan import GRADIENT, HEURISTIC
from tests.graph_formats import check_community_format

PROMPT = "how do i use the file ?"
COMPLETION = "open returns a file object . close the file when done ."


def _decode(pipeline, job, granularity):  # type: ignore[no-untyped-def]
    plan = pipeline.default_plan(granularity)
    [extraction] = pipeline.extract([job], [plan])
    return plan, pipeline.decode(extraction, plan)


def test_logit_targets_are_the_produced_tokens(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    _, decoding = _decode(tiny_pipeline, make_job(PROMPT, COMPLETION, "token"), "token")
    targets = target_specs(decoding, "causal-lm")
    completion_positions = decoding.extraction.encoded.completion_positions
    assert [t.ctx_idx for t in targets] == completion_positions[: len(targets)]
    assert all(t.token == decoding.tokens[t.ctx_idx] for t in targets)
    # the target is the real next-token logit: the model's logits at the previous position
    ids = torch.tensor([decoding.tokens])
    with torch.no_grad():
        logits = tiny_pipeline.subject.model(input_ids=ids).logits[0]
        out = tiny_pipeline.subject.run_replaced(ids, {})
    values = target_values(out, targets, decoding, "causal-lm")
    for t, v in zip(targets, values, strict=True):
        assert float(v) == pytest.approx(float(logits[t.ctx_idx - 1, t.token]), rel=1e-5)


def _target_with_codes(pipeline, decoding, layer, codes_values, target) -> float:  # type: ignore[no-untyped-def]
    """The target with the layer's SAE codes replaced by ``codes_values``, the SAE error held fixed."""
    sae, codes = pipeline.saes[layer], decoding.codes[layer]
    original, indices = codes.values.clone(), codes.indices.clone()

    def splice(x: torch.Tensor) -> torch.Tensor:
        error = x[0] - sae.decode_sparse(original, indices)
        return (sae.decode_sparse(codes_values, indices) + error)[None]

    with torch.no_grad():
        out = pipeline.subject.run_replaced(torch.tensor([decoding.tokens]), {layer: splice})
    return float(target_values(out, [target], decoding, pipeline.subject.kind)[0])


def test_gradient_times_activation_matches_finite_difference(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    plan, decoding = _decode(tiny_pipeline, make_job(PROMPT, COMPLETION, "token"), "token")
    layer = plan.layers[0]
    targets = target_specs(decoding, "causal-lm")
    feat, _, _ = gradient_layer(tiny_pipeline.subject, tiny_pipeline.saes[layer], decoding, layer, targets)
    j = len(targets) - 1
    pos, slot = divmod(int(feat[j].abs().argmax()), feat.shape[2])
    codes = decoding.codes[layer].values.clone()
    activation, eps = float(codes[pos, slot]), 1e-2
    assert activation > 0
    up, down = codes.clone(), codes.clone()
    up[pos, slot] += eps
    down[pos, slot] -= eps
    slope = (
        _target_with_codes(tiny_pipeline, decoding, layer, up, targets[j])
        - _target_with_codes(tiny_pipeline, decoding, layer, down, targets[j])
    ) / (2 * eps)
    assert float(feat[j, pos, slot]) == pytest.approx(activation * slope, rel=0.05, abs=1e-4)
    # zeroing a feature moves the target by about its attribution (first-order)
    assert abs(float(feat[j, pos, slot])) > 0


def test_full_pipeline_produces_valid_graphs(tiny_pipeline, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    for granularity in ("sentence", "token"):
        job = make_job(PROMPT, COMPLETION, granularity)
        plan, decoding = _decode(tiny_pipeline, job, granularity)
        attribution = tiny_pipeline.attribute(decoding, plan)
        assert attribution.method == GRADIENT
        graph = tiny_pipeline.graph(job, decoding, attribution, plan)
        jsonschema.validate(graph, graph_schema)
        assert graph["granularity"] == granularity and graph["attribution_method"] == GRADIENT
        logits = [n for n in graph["nodes"] if n["feature_type"] == "logit"]
        check_community_format(graph)
        # circuit-tracer names the target layer n_layers + 1 (2 blocks here)
        assert logits and all(n["layer"] == "3" for n in logits)
        assert any(link["target"] == logits[0]["node_id"] for link in graph["links"])
        for node, target in zip(logits, attribution.targets, strict=True):
            assert node["token_prob"] == pytest.approx(target.prob, abs=1e-6)
        if granularity == "token":  # a produced token: its id, read at the position before it
            first = attribution.targets[0]
            assert logits[0]["feature"] == first.token and logits[0]["ctx_idx"] == first.ctx_idx - 1
            logits_out = tiny_pipeline.subject.run_replaced(torch.tensor([decoding.tokens]), {})
            expect = float(logits_out[first.ctx_idx - 1].softmax(-1)[first.token])
            assert first.prob == pytest.approx(expect, rel=1e-4)


def test_heuristic_runs_where_gradients_cannot(tiny_pipeline, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    job = make_job(PROMPT, COMPLETION, "sentence")
    plan, decoding = _decode(tiny_pipeline, job, "sentence")
    with torch.inference_mode():  # no autograd at all: gradient attribution must fail cleanly
        with pytest.raises(AttributionError):
            tiny_pipeline.attribute(decoding, plan)
        result = tiny_pipeline.heuristic(decoding, plan)
    assert result.method == HEURISTIC
    assert result.node_scores.shape == (len(decoding.nodes), len(result.targets))
    assert result.node_scores.abs().sum() > 0
    graph = tiny_pipeline.graph(job, decoding, result, plan)
    jsonschema.validate(graph, graph_schema)
    check_community_format(graph)
    assert graph["attribution_method"] == HEURISTIC
    assert all(t.prob is not None and 0.0 < t.prob < 1.0 for t in result.targets)  # read out, not blank


def test_heuristic_is_activation_times_cosine(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    plan, decoding = _decode(tiny_pipeline, make_job(PROMPT, COMPLETION, "token"), "token")
    result = tiny_pipeline.heuristic(decoding, plan)
    layer = plan.layers[0]
    sae, target = tiny_pipeline.saes[layer], result.targets[0]
    direction = tiny_pipeline.subject.unembed(torch.tensor([target.token]))[0]
    for i, node in enumerate(decoding.nodes):
        if node.ctx_idx < target.ctx_idx:  # causal: only earlier positions reach the target
            cos = torch.nn.functional.cosine_similarity(sae.W_dec[node.feature], direction, dim=0)
            assert float(result.node_scores[i, 0]) == pytest.approx(node.activation * float(cos), abs=1e-5)
        else:
            assert float(result.node_scores[i, 0]) == 0.0


def test_two_layer_featureset_adds_feature_edges_across_layers(tiny_lm, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    from hif.explainer.core.pipeline import load_pipeline
    from hif.explainer.featureset import load_registry

    pipeline = load_pipeline(load_registry(tiny_lm.registry).get("tiny-gpt2-res01"), device="cpu", threads=1)
    job = make_job(PROMPT, COMPLETION, "token")
    plan = pipeline.default_plan("token")
    [extraction] = pipeline.extract([job], [plan])
    decoding = pipeline.decode(extraction, plan)
    attribution = pipeline.attribute(decoding, plan)
    assert attribution.feature_edges
    for src, dst, weight in attribution.feature_edges:
        lo, hi = decoding.nodes[src], decoding.nodes[dst]
        assert (lo.layer, hi.layer) == (0, 1) and lo.ctx_idx <= hi.ctx_idx  # causal: no edge from the future
        assert weight != 0.0
    graph = pipeline.graph(job, decoding, attribution, plan)
    jsonschema.validate(graph, graph_schema)
    layer_of = {n["node_id"]: n["layer"] for n in graph["nodes"]}
    assert any(layer_of[link["source"]] == "0" and layer_of[link["target"]] == "1" for link in graph["links"])
    # sentence granularity keeps the cheaper graph: no feature edges
    plan = pipeline.default_plan("sentence")
    [extraction] = pipeline.extract([job], [plan])
    decoding = pipeline.decode(extraction, plan)
    assert pipeline.attribute(decoding, plan).feature_edges == []


@pytest.mark.parametrize("granularity", ["token", "sentence"])
def test_two_layer_links_into_a_target_sum_to_the_known_direct_effect(tiny_lm, make_job, granularity) -> None:  # type: ignore[no-untyped-def]
    """No double counting: what links into a target is the upper layer's direct effect, whose sum has a
    closed form independent of the SAE, (x_1 - b_dec) . d target / d x_1 from a plain backward pass;
    the lower layer reaches the targets only through the upper one (its links go to layer-1 nodes)."""
    from hif.explainer.core.pipeline import load_pipeline
    from hif.explainer.featureset import load_registry

    pipeline = load_pipeline(load_registry(tiny_lm.registry).get("tiny-gpt2-res01"), device="cpu", threads=1)
    job = make_job(PROMPT, COMPLETION, granularity)
    plan = dataclasses.replace(pipeline.default_plan(granularity), max_nodes=100_000, max_edges=1_000_000)
    [extraction] = pipeline.extract([job], [plan])
    decoding = pipeline.decode(extraction, plan)
    attribution = pipeline.attribute(decoding, plan)
    graph = pipeline.graph(job, decoding, attribution, plan)
    layer_of = {n["node_id"]: n["layer"] for n in graph["nodes"]}
    targets = [n["node_id"] for n in graph["nodes"] if n["feature_type"] == "logit"]
    assert all(layer_of[link["source"]] == "1" for link in graph["links"] if link["target"] in targets)
    assert all(layer_of[link["target"]] == "1" for link in graph["links"] if layer_of[link["source"]] == "0")

    leaf: dict[str, torch.Tensor] = {}

    def capture(x: torch.Tensor) -> torch.Tensor:
        leaf["x"] = x.detach().requires_grad_()
        return leaf["x"]

    ids = torch.tensor([decoding.tokens])
    with torch.enable_grad():
        out = pipeline.subject.run_replaced(ids, {1: capture})
        values = target_values(out[0] if out.dim() == 3 else out, attribution.targets, decoding, "causal-lm")
        content = decoding.content[:, None]
        for node_id, value in zip(targets, values, strict=True):
            (grad,) = torch.autograd.grad(value, [leaf["x"]], retain_graph=True)
            with torch.no_grad():
                expect = float((((leaf["x"] - pipeline.saes[1].b_dec) * grad) * content).sum())
            got = sum(link["weight"] for link in graph["links"] if link["target"] == node_id)
            assert got == pytest.approx(expect, rel=1e-3, abs=1e-4)
