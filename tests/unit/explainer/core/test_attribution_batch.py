"""Batched gradient attribution equals attribution one job at a time (marked: loads MiniLM).

Jobs of mixed lengths share padded passes; if padding leaked gradient between rows, or a row's
target read another row, the per-job numbers would differ.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hif.errors import AttributionError
from hif.explainer.core.attribution import Attribution, gradient_batch
from hif.explainer.featureset import load_registry

pytestmark = pytest.mark.explainer

TEXTS = [
    ("How do I open a file in Python?", "Use open(). Close it when you are done."),
    (
        "Explain the difference between threads and processes in one short paragraph, please.",
        "Threads share memory inside one process. Processes each get their own memory. "
        "Switching threads is cheaper, but a crash in one thread can take the whole process down. "
        "Pick processes for isolation!",
    ),
    ("Hi", "Hello there."),
    ("What is a dictionary?", "A mapping from keys to values. Lookups are fast. Keys must be hashable."),
]
TWO_LAYERS = "sae-minilm-l6-res2-4-4k"


def _load(name: str | None):  # type: ignore[no-untyped-def]
    from hif.explainer.core.pipeline import load_pipeline

    return load_pipeline(load_registry().resolve(name), device="cpu", threads=1)


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    return _load(None)


@pytest.fixture(scope="module")
def two_layer():  # type: ignore[no-untyped-def]
    return _load(TWO_LAYERS)


def _decode_all(pipeline, make_job, granularities: list[str], texts=TEXTS):  # type: ignore[no-untyped-def]
    jobs = [
        make_job(p, c, g, featureset=pipeline.featureset.name)
        for (p, c), g in zip(texts, granularities, strict=True)
    ]
    plans = [pipeline.default_plan(g) for g in granularities]
    extractions = pipeline.extract(jobs, plans)
    return [pipeline.decode(e, p) for e, p in zip(extractions, plans, strict=True)], plans


def assert_same(alone: Attribution, batched: Any) -> None:
    assert isinstance(batched, Attribution)
    assert [t.label for t in alone.targets] == [t.label for t in batched.targets]
    for a, b in zip(alone.targets, batched.targets, strict=True):
        assert b.value == pytest.approx(a.value, rel=1e-4, abs=1e-6)
    scale = float(alone.node_scores.abs().max())
    torch.testing.assert_close(batched.node_scores, alone.node_scores, rtol=1e-3, atol=1e-5 * scale)
    assert alone.error_scores.keys() == batched.error_scores.keys()
    for layer, errors in alone.error_scores.items():
        torch.testing.assert_close(batched.error_scores[layer], errors, rtol=1e-3, atol=1e-5 * scale)
    assert len(batched.feature_edges) == len(alone.feature_edges)
    for (s1, d1, w1), (s2, d2, w2) in zip(alone.feature_edges, batched.feature_edges, strict=True):
        assert (s1, d1) == (s2, d2) and w2 == pytest.approx(w1, rel=1e-3, abs=1e-7)


@pytest.mark.parametrize(
    "granularities",
    [["sentence"] * 4, ["token"] * 4, ["sentence", "token", "token", "sentence"]],
    ids=["sentence", "token", "mixed"],
)
def test_batched_equals_one_job_at_a_time(minilm, make_job, granularities) -> None:  # type: ignore[no-untyped-def]
    decodings, plans = _decode_all(minilm, make_job, granularities)
    assert len({len(d.tokens) for d in decodings}) == len(decodings)  # mixed lengths: real padding
    batched = minilm.attribute_batch(decodings, plans)
    for decoding, plan, result in zip(decodings, plans, batched, strict=True):
        assert_same(minilm.attribute(decoding, plan), result)
    assert any(float(r.node_scores.abs().sum()) > 0 for r in batched)  # not trivially equal zeros


def test_small_chunks_give_the_same_numbers(minilm, make_job) -> None:  # type: ignore[no-untyped-def]
    decodings, plans = _decode_all(minilm, make_job, ["sentence"] * 4)
    whole = gradient_batch(minilm.subject, minilm.saes, decodings, plans)
    chunked = gradient_batch(minilm.subject, minilm.saes, decodings, plans, max_row_tokens=1)
    for a, b in zip(whole, chunked, strict=True):
        assert isinstance(a, Attribution)
        assert_same(a, b)


def test_two_layer_featureset_token_and_sentence(two_layer, make_job) -> None:  # type: ignore[no-untyped-def]
    decodings, plans = _decode_all(two_layer, make_job, ["token", "sentence", "token", "sentence"])
    batched = two_layer.attribute_batch(decodings, plans)
    for decoding, plan, result in zip(decodings, plans, batched, strict=True):
        alone = two_layer.attribute(decoding, plan)
        assert set(alone.error_scores) == {2, 4}
        assert_same(alone, result)
    assert batched[0].feature_edges  # token graphs of two layers carry feature -> feature edges


def test_plans_with_different_layers_share_a_batch(two_layer, make_job) -> None:  # type: ignore[no-untyped-def]
    """reduce-layers leaves some jobs with one layer: each gets exactly its own layers' scores."""
    import dataclasses

    decodings, plans = _decode_all(two_layer, make_job, ["sentence"] * 4)
    plans[1] = dataclasses.replace(plans[1], layers=(4,))
    decodings[1] = two_layer.decode(decodings[1].extraction, plans[1])
    batched = two_layer.attribute_batch(decodings, plans)
    assert set(batched[1].error_scores) == {4} and set(batched[0].error_scores) == {2, 4}
    for decoding, plan, result in zip(decodings, plans, batched, strict=True):
        assert_same(two_layer.attribute(decoding, plan), result)


def test_a_job_without_targets_fails_alone(minilm, make_job) -> None:  # type: ignore[no-untyped-def]
    decodings, plans = _decode_all(minilm, make_job, ["sentence"] * 4)
    decodings[2].segments.clear()  # no sentence left to be a target
    batched = minilm.attribute_batch(decodings, plans)
    assert isinstance(batched[2], AttributionError)
    for i in (0, 1, 3):
        assert_same(minilm.attribute(decodings[i], plans[i]), batched[i])


CAUSAL_TEXTS = [
    ("how do i use the file ?", "open returns a file object . close the file when done ."),
    ("the cat", "sat on the mat ."),
    ("keys map to values in a dictionary .", "lookups are fast . threads share memory . the loop ends ."),
]


@pytest.mark.parametrize("granularity", ["sentence", "token"])
def test_causal_lm_batched_equals_one_job_at_a_time(tiny_pipeline, make_job, granularity) -> None:  # type: ignore[no-untyped-def]
    decodings, plans = _decode_all(tiny_pipeline, make_job, [granularity] * 3, CAUSAL_TEXTS)
    batched = tiny_pipeline.attribute_batch(decodings, plans)
    for decoding, plan, result in zip(decodings, plans, batched, strict=True):
        assert_same(tiny_pipeline.attribute(decoding, plan), result)


def test_blocks_of_unknown_output_format_run_in_full(minilm, make_job) -> None:  # type: ignore[no-untyped-def]
    """Without knowing a block's output format, run_from runs every block and overwrites the hook
    layer's output instead of standing in for the blocks below it: the same numbers."""
    decodings, plans = _decode_all(minilm, make_job, ["sentence", "token", "sentence", "token"])
    minilm.attribute(decodings[0], plans[0])  # runs the real blocks (a packed extraction does not)
    assert minilm.subject._bare_blocks is True  # learnt there: MiniLM's blocks return tensors
    skipped = minilm.attribute_batch(decodings, plans)
    minilm.subject._bare_blocks = None
    try:
        full = minilm.attribute_batch(decodings, plans)
    finally:
        minilm.subject._bare_blocks = True
    for a, b in zip(skipped, full, strict=True):
        assert isinstance(a, Attribution)
        assert_same(a, b)


def test_a_batch_that_fails_is_retried_job_by_job(minilm, make_job, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from hif.explainer.core import attribution

    decodings, plans = _decode_all(minilm, make_job, ["sentence"] * 4)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(attribution, "gradient_rows", broken)
    batched = minilm.attribute_batch(decodings, plans)
    for decoding, plan, result in zip(decodings, plans, batched, strict=True):
        assert_same(minilm.attribute(decoding, plan), result)


def test_minilm_runs_the_written_out_block_and_gets_autograds_numbers(minilm, make_job) -> None:  # type: ignore[no-untyped-def]
    """MiniLM's only block above layer 4 is its last, a plain BERT block: ``gradient_rows`` takes the
    written-out passes (called directly, so no job-by-job retry could hide a failure) and gives the
    numbers autograd gives through the real module."""
    from hif.explainer.core import attribution

    assert attribution._written_out(minilm.subject, 4) is not None
    assert attribution._written_out(minilm.subject, 2) is None  # blocks 3 to 5 above: autograd
    decodings, plans = _decode_all(minilm, make_job, ["sentence", "token", "sentence", "token"])

    def run(written_out: bool) -> list[attribution._Job]:
        jobs = [
            attribution._Job(d, p, attribution.target_specs(d, "encoder"))
            for d, p in zip(decodings, plans, strict=True)
        ]
        attribution.gradient_rows(minilm.subject, minilm.saes[4], 4, jobs, written_out=written_out)
        return jobs

    for a, b in zip(run(True), run(False), strict=True):
        assert a.values == pytest.approx(b.values, rel=1e-4, abs=1e-6)
        (feat_a, err_a), (feat_b, err_b) = a.per_layer[4], b.per_layer[4]
        scale = float(feat_b.abs().max())
        assert scale > 0
        torch.testing.assert_close(feat_a, feat_b, rtol=1e-3, atol=1e-5 * scale)
        torch.testing.assert_close(err_a, err_b, rtol=1e-3, atol=1e-5 * scale)


def test_packed_rows_let_texts_of_different_lengths_share_a_pass() -> None:
    """Padded, a 10-token and a 100-token text would pad the short one 10x: two passes. Packed (the
    written-out path) nothing is padded, so they share one; a job with more targets still pads."""
    from types import SimpleNamespace

    from hif.explainer.core.attribution import Target, _chunks, _Job

    def job(tokens: int, targets: int) -> _Job:
        decoding = SimpleNamespace(tokens=[0] * tokens)
        return _Job(decoding, None, [Target(str(i), i, (i,)) for i in range(targets)])  # type: ignore[arg-type]

    short, long = job(10, 2), job(100, 2)
    assert [len(c) for c in _chunks([short, long], 8192)] == [1, 1]
    assert [len(c) for c in _chunks([short, long], 8192, packed=True)] == [2]
    assert [len(c) for c in _chunks([job(50, 1), job(50, 4)], 8192, packed=True)] == [1, 1]
    assert [len(c) for c in _chunks([short, long], 100, packed=True)] == [1, 1]  # the row budget holds


# --- the one-job-at-a-time baseline (plan.batched False) and the packed extraction --------------


@pytest.mark.parametrize("name", [None, TWO_LAYERS], ids=["minilm", "two-layer"])
def test_packed_extraction_equals_the_padded_forward(name, make_job, minilm, two_layer) -> None:  # type: ignore[no-untyped-def]
    """Texts of mixed lengths packed through the written-out blocks: the hidden states at every
    planned layer are the padded forward's."""
    pipeline = minilm if name is None else two_layer
    ids = [pipeline.subject.encode(p, c).input_ids for p, c in TEXTS]
    assert len({len(i) for i in ids}) == len(ids)
    layers = list(pipeline.featureset.layers)
    packed = pipeline.subject.capture_packed(ids, layers)
    assert packed is not None
    padded = pipeline._capture_padded(ids, layers)
    for a, b in zip(packed, padded, strict=True):
        assert a.keys() == b.keys() == set(layers)
        for layer in layers:
            torch.testing.assert_close(a[layer], b[layer], rtol=1e-4, atol=1e-4)


def test_a_causal_lm_has_no_packed_forward_and_extracts_padded(tiny_pipeline, make_job) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    ids = [tiny_pipeline.subject.encode(p, c).input_ids for p, c in CAUSAL_TEXTS]
    assert tiny_pipeline.subject.capture_packed(ids, list(tiny_pipeline.featureset.layers)) is None
    jobs = [make_job(p, c, featureset=tiny_pipeline.featureset.name) for p, c in CAUSAL_TEXTS]
    plan = tiny_pipeline.default_plan("sentence")
    on = tiny_pipeline.extract(jobs, [plan] * 3)
    off = tiny_pipeline.extract(jobs, [dataclasses.replace(plan, batched=False)] * 3)
    for a, b in zip(on, off, strict=True):
        for layer in a.hidden:
            assert torch.equal(a.hidden[layer], b.hidden[layer])  # the same padded forward


def _graphs(pipeline, make_job, granularities: list[str], batched: bool):  # type: ignore[no-untyped-def]
    import dataclasses

    jobs = [
        make_job(p, c, g, featureset=pipeline.featureset.name)
        for (p, c), g in zip(TEXTS, granularities, strict=True)
    ]
    plans = [dataclasses.replace(pipeline.default_plan(g), batched=batched) for g in granularities]
    extractions = pipeline.extract(jobs, plans)
    assert all(bool(e.topk) is batched for e in extractions)  # the batch-wide encode: on only
    decodings = [pipeline.decode(e, p) for e, p in zip(extractions, plans, strict=True)]
    if batched:
        results = pipeline.attribute_batch(decodings, plans)
    else:
        results = [pipeline.attribute(d, p) for d, p in zip(decodings, plans, strict=True)]
    return [pipeline.graph(*args) for args in zip(jobs, decodings, results, plans, strict=True)]


def _assert_same_graph(a: dict[str, Any], b: dict[str, Any]) -> None:
    nodes_a, nodes_b = {n["node_id"]: n for n in a["nodes"]}, {n["node_id"]: n for n in b["nodes"]}
    assert nodes_a.keys() == nodes_b.keys()
    scale = max(abs(link["weight"]) for link in a["links"])
    for node_id, node in nodes_a.items():
        for field in ("activation", "influence", "token_prob"):
            if node[field] is not None:
                assert nodes_b[node_id][field] == pytest.approx(node[field], rel=1e-3, abs=1e-5)
    links_a = {(x["source"], x["target"]): x["weight"] for x in a["links"]}
    links_b = {(x["source"], x["target"]): x["weight"] for x in b["links"]}
    assert links_a.keys() == links_b.keys()
    # Graphs store weights rounded to 6 decimals, so a weight near 1e-4 may differ by one last digit.
    quantum = 2e-6  # one last digit each way, plus float slack
    for key, weight in links_a.items():
        assert links_b[key] == pytest.approx(weight, rel=1e-3, abs=max(1e-5 * scale, quantum))


@pytest.mark.parametrize("name", [None, TWO_LAYERS], ids=["minilm", "two-layer"])
def test_off_and_on_give_the_same_graphs(name, make_job, minilm, two_layer) -> None:  # type: ignore[no-untyped-def]
    """``batched=False`` (attribution_batching=off, the bench's baseline) runs the path as it was
    before batching: padded extraction, the SAE encoded per job, one job's attribution at a time.
    ``on`` packs, encodes the batch at once and shares attribution passes: the same graphs."""
    pipeline = minilm if name is None else two_layer
    granularities = ["sentence", "token", "token", "sentence"]
    off = _graphs(pipeline, make_job, granularities, batched=False)
    on = _graphs(pipeline, make_job, granularities, batched=True)
    for a, b in zip(off, on, strict=True):
        assert len(a["links"]) > 0
        _assert_same_graph(a, b)
