"""The default featureset end to end: all-MiniLM-L6-v2 + the shipped TopK SAE (marked: loads the model)."""

from __future__ import annotations

import jsonschema
import pytest
import torch

from hif.explainer.featureset import load_registry
from hif.explainer.plan import GRADIENT, HEURISTIC
from tests.graph_formats import check_community_format

pytestmark = pytest.mark.explainer

PROMPT = "How do I open a file in Python?"
COMPLETION = "Use the built-in open() function. It returns a file object. Close it when you are done."


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    from hif.explainer.core.pipeline import load_pipeline

    info = load_registry().resolve(None)
    return load_pipeline(info, device="cpu", threads=1)


def test_default_featureset_is_shipped_and_served() -> None:
    registry = load_registry()
    assert registry.resolve(None).name == "sae-minilm-l6-res4-4k"
    assert registry.resolve(None).available
    assert not registry.get("sae-gpt4-2m").available


@pytest.mark.parametrize("granularity", ["sentence", "token"])
def test_minilm_graph_is_valid_with_sentence_targets(minilm, make_job, granularity, graph_schema) -> None:  # type: ignore[no-untyped-def]
    job = make_job(PROMPT, COMPLETION, granularity, featureset=minilm.featureset.name)
    plan = minilm.default_plan(granularity)
    assert plan.layers == (4,) and plan.top_k == minilm.featureset.k == 48
    [extraction] = minilm.extract([job], [plan])
    assert extraction.hidden[4].shape[-1] == 384
    decoding = minilm.decode(extraction, plan)
    attribution = minilm.attribute(decoding, plan)
    graph = minilm.graph(job, decoding, attribution, plan)
    jsonschema.validate(graph, graph_schema)
    assert graph["attribution_method"] == GRADIENT and graph["featureset"] == "sae-minilm-l6-res4-4k"
    # one target per completion sentence: its similarity to the prompt
    assert [t.ctx_idx for t in attribution.targets] == [1, 2, 3]
    assert all(-1.0 <= t.value <= 1.0 for t in attribution.targets)
    features = [n for n in graph["nodes"] if n["feature_type"] == "sae"]
    assert 0 < len(features) <= plan.max_nodes
    assert all(n["clerp"] for n in features)
    check_community_format(graph)
    # the encoder's targets: a virtual logit per sentence, at its last token, p = (cosine + 1) / 2
    logits = [n for n in graph["nodes"] if n["feature_type"] == "logit"]
    assert graph["metadata"]["target"]["token_prob"] == "(cosine + 1) / 2"
    for node, target in zip(logits, attribution.targets, strict=True):
        assert node["layer"] == "7" and node["ctx_idx"] == decoding.segments[target.ctx_idx].positions[-1]
        assert node["token_prob"] == pytest.approx((target.value + 1) / 2, abs=1e-6)
        assert node["feature"] >= len(minilm.subject.tokenizer)
    heuristic = minilm.heuristic(decoding, plan)
    assert heuristic.method == HEURISTIC
    # the heuristic reads the same targets out of a plain forward pass
    assert [t.value for t in heuristic.targets] == pytest.approx(
        [t.value for t in attribution.targets], abs=1e-4
    )
    heuristic_graph = minilm.graph(job, decoding, heuristic, plan)
    jsonschema.validate(heuristic_graph, graph_schema)
    check_community_format(heuristic_graph)


def test_minilm_sae_reconstructs_live_activations(minilm, make_job) -> None:  # type: ignore[no-untyped-def]
    job = make_job(PROMPT, COMPLETION, featureset=minilm.featureset.name)
    plan = minilm.default_plan("sentence")
    [extraction] = minilm.extract([job], [plan])
    decoding = minilm.decode(extraction, plan)
    x = extraction.hidden[4][decoding.content]
    err = decoding.codes[4].error[decoding.content]
    fvu = float(err.pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert fvu < 0.3  # one short chat turn: looser than the held-out goal, still far from 1
    assert torch.equal(
        decoding.codes[4].values[~decoding.content],
        torch.zeros_like(decoding.codes[4].values[~decoding.content]),
    )


def test_a_long_prompt_loses_its_head_and_the_completion_is_explained_whole(
    minilm, make_job, graph_schema
) -> None:  # type: ignore[no-untyped-def]
    long_prompt = " ".join(["Tell me about the weather in the mountains today."] * 60)  # ~600 tokens
    job = make_job(long_prompt, COMPLETION, featureset=minilm.featureset.name)
    plan = minilm.default_plan("sentence")
    [extraction] = minilm.extract([job], [plan])
    enc = extraction.encoded
    limit = minilm.subject.max_tokens
    assert len(enc.input_ids) == limit and enc.special[0] and enc.special[-1]
    alone = minilm.subject.encode("", COMPLETION)
    assert len(enc.completion_positions) == len(alone.completion_positions)  # every completion token
    kept_prompt = [
        i for i in range(len(enc.offsets)) if not enc.special[i] and enc.offsets[i][0] < enc.completion_char
    ]
    assert enc.offsets[kept_prompt[-1]][1] == len(long_prompt)  # the prompt's tail stays, next to it
    assert enc.trimmed_prompt_tokens + len(kept_prompt) == len(
        minilm.subject.tokenizer(long_prompt, add_special_tokens=False)["input_ids"]
    )
    decoding = minilm.decode(extraction, plan)
    graph = minilm.graph(job, decoding, minilm.attribute(decoding, plan), plan)
    jsonschema.validate(graph, graph_schema)
    assert graph["metadata"]["info"]["prompt_tokens_trimmed"] == enc.trimmed_prompt_tokens > 300
    assert len(decoding.segments) >= 3  # the completion's three sentences are all there


def test_minilm_graph_links_tokens_to_features_and_scores_itself(minilm, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    """BERT is post-LayerNorm: unfrozen, gradient x input at its input nearly cancels out; the local
    replacement model (LayerNorm scales, attention patterns and GELU gates frozen) gives edges that
    add up to a real part of each pre-activation, and the graph its circuit-tracer scores."""
    import dataclasses

    job = make_job("How do I open a file?", "Use open(). Close it after.", "sentence", featureset="x")
    plan = minilm.default_plan("sentence")
    plan = dataclasses.replace(plan, embedding_nodes=plan.max_nodes)
    [extraction] = minilm.extract([job], [plan])
    decoding = minilm.decode(extraction, plan)
    attribution = minilm.attribute(decoding, plan)
    links = minilm.embedding_links(decoding, attribution, plan)
    assert links is not None and links.complete
    assert links.frozen == ("LayerNorm scales", "MLP activation gates", "attention patterns")
    share = links.weights.sum(1) / links.pre_acts
    assert float(share.abs().median()) > 0.1
    graph = minilm.graph(job, decoding, attribution, plan)
    jsonschema.validate(graph, graph_schema)
    check_community_format(graph)
    scores = graph["metadata"]["scores"]
    assert 0 < scores["replacement"] < 1 and 0 < scores["completeness"] < 1


def test_the_batch_encoded_at_extraction_decodes_as_one_job_alone(minilm, make_job) -> None:  # type: ignore[no-untyped-def]
    """Extraction encodes a batch's rows in one product; each job's codes are its own top k, and a
    plan asking for more latents than were encoded (k above a reduce-topk plan's) encodes afresh."""
    import dataclasses

    jobs = [
        make_job(PROMPT, COMPLETION, "sentence", featureset=minilm.featureset.name),
        make_job("Hi", "Hello there. How are you?", "token", featureset=minilm.featureset.name),
    ]
    plans = [minilm.default_plan("sentence"), dataclasses.replace(minilm.default_plan("token"), top_k=8)]
    extractions = minilm.extract(jobs, plans)
    assert all(4 in e.topk for e in extractions)
    for extraction, plan in [
        *zip(extractions, plans, strict=True),
        (extractions[1], minilm.default_plan("token")),
    ]:
        batched = minilm.decode(extraction, plan)
        alone = minilm.decode(dataclasses.replace(extraction, topk={}), plan)
        assert batched.codes[4].indices.shape[1] == min(plan.top_k, minilm.featureset.k)
        torch.testing.assert_close(batched.codes[4].values, alone.codes[4].values, rtol=1e-4, atol=1e-5)
        assert torch.equal(batched.codes[4].indices, alone.codes[4].indices)
        assert [(n.feature, n.ctx_idx) for n in batched.nodes] == [
            (n.feature, n.ctx_idx) for n in alone.nodes
        ]
        assert [n.activation for n in batched.nodes] == pytest.approx(
            [n.activation for n in alone.nodes], rel=1e-4
        )
