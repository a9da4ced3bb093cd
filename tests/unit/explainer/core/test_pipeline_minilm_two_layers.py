"""The shipped two-layer featureset: token graphs carry cross-layer feature -> feature edges."""

from __future__ import annotations

import jsonschema
import pytest

from hif.explainer.featureset import load_registry
from tests.graph_formats import check_community_format

pytestmark = pytest.mark.explainer

NAME = "sae-minilm-l6-res2-4-4k"
PROMPT = "How do I open a file in Python?"
COMPLETION = "Use the built-in open() function. It returns a file object. Close it when you are done."


@pytest.fixture(scope="module")
def two_layer():  # type: ignore[no-untyped-def]
    from hif.explainer.core.pipeline import load_pipeline

    return load_pipeline(load_registry().resolve(NAME), device="cpu", threads=1)


def test_two_layer_featureset_is_shipped_and_served() -> None:
    info = load_registry().resolve(NAME)
    assert info.available and info.layers == (2, 4)


def _feature_edges(graph: dict) -> list[dict]:  # type: ignore[type-arg]
    kinds = {n["node_id"]: (n["feature_type"], n["layer"]) for n in graph["nodes"]}
    return [
        link
        for link in graph["links"]
        if kinds[link["source"]][0] == "sae" and kinds[link["target"]][0] == "sae"
    ]


def test_token_graph_has_cross_layer_feature_edges_within_budget(two_layer, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    job = make_job(PROMPT, COMPLETION, "token", featureset=NAME)
    plan = two_layer.default_plan("token")
    assert plan.layers == (2, 4)
    [extraction] = two_layer.extract([job], [plan])
    decoding = two_layer.decode(extraction, plan)
    graph = two_layer.graph(job, decoding, two_layer.attribute(decoding, plan), plan)
    jsonschema.validate(graph, graph_schema)
    check_community_format(graph)
    _direct_effects_only(graph)
    edges = _feature_edges(graph)
    assert edges, "a two-layer token graph must link features across layers"
    layers = {n["node_id"]: n["layer"] for n in graph["nodes"]}
    assert all(int(layers[e["source"]]) < int(layers[e["target"]]) for e in edges)
    assert len(graph["links"]) <= plan.max_edges
    assert len([n for n in graph["nodes"] if n["feature_type"] == "sae"]) <= plan.max_nodes


def test_sentence_graph_has_no_feature_edges(two_layer, make_job, graph_schema) -> None:  # type: ignore[no-untyped-def]
    job = make_job(PROMPT, COMPLETION, "sentence", featureset=NAME)
    plan = two_layer.default_plan("sentence")
    [extraction] = two_layer.extract([job], [plan])
    decoding = two_layer.decode(extraction, plan)
    graph = two_layer.graph(job, decoding, two_layer.attribute(decoding, plan), plan)
    jsonschema.validate(graph, graph_schema)
    assert not _feature_edges(graph)
    check_community_format(graph)
    _direct_effects_only(graph)


def _direct_effects_only(graph: dict) -> None:  # type: ignore[type-arg]
    """Layer 4's residual SAE cuts the stream: only layer 4 (and its error) links to the targets."""
    by_id = {n["node_id"]: n for n in graph["nodes"]}
    into_targets = [link for link in graph["links"] if by_id[link["target"]]["feature_type"] == "logit"]
    assert into_targets and all(by_id[link["source"]]["layer"] == "4" for link in into_targets)
    # feature ids stay distinct across layers (Cantor pairing), so the same latent index in both differs
    latents = [
        (n["layer"], n["hif_latent"], n["feature"]) for n in graph["nodes"] if n["feature_type"] == "sae"
    ]
    assert len({(layer, latent) for layer, latent, _ in latents}) == len({f for _, _, f in latents})
