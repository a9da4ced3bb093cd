"""The written-out last BERT block against the real module: same output, same gradients.

A tiny random BERT (built here, no download) keeps it quick; the MiniLM end-to-end check is in
test_attribution_batch.py.
"""

from __future__ import annotations

import pytest
import torch

from hif.explainer.core import lastblock

pytestmark = pytest.mark.explainer

transformers = pytest.importorskip("transformers")
LENGTHS = [7, 3, 11]


def _bert(**overrides: object):  # type: ignore[no-untyped-def]
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        **overrides,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config, add_pooling_layer=False).eval().requires_grad_(False)
    with torch.no_grad():  # LayerNorms away from (1, 0), so a mistaken affine part shows
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


def _module_out(model, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The real module, one job at a time (no padding, so no mask)."""
    out = model.encoder.layer[-1](x[None])
    return (out[0] if isinstance(out, tuple) else out)[0]


def test_forward_equals_the_module_job_by_job() -> None:
    model = _bert()
    block = lastblock.block_of(model, model.encoder.layer[-1])
    assert block is not None
    x = torch.randn(sum(LENGTHS), 32)
    saved = lastblock.forward(block, x, LENGTHS)
    for lo, hi in saved.spans:  # each job attends to its own rows only
        torch.testing.assert_close(saved.out[lo:hi], _module_out(model, x[lo:hi]), rtol=1e-5, atol=1e-5)


def test_backward_equals_autograd_for_each_target() -> None:
    """Targets read a few rows each (zero gradient elsewhere): the row-restricted backward must
    still give every input row's gradient, through keys and values."""
    model = _bert()
    block = lastblock.block_of(model, model.encoder.layer[-1])
    assert block is not None
    x = torch.randn(sum(LENGTHS), 32)
    saved = lastblock.forward(block, x, LENGTHS)
    grads = torch.randn(3, x.shape[0], 32)
    reads = torch.rand(3, x.shape[0]) < 0.4
    reads[2] = False
    reads[2, 0] = True  # a target reading one row of one job
    grads = grads * reads[..., None]
    got = lastblock.backward(block, saved, grads)
    for t in range(3):
        for lo, hi in saved.spans:
            leaf = x[lo:hi].clone().requires_grad_(True)
            with torch.enable_grad():
                (want,) = torch.autograd.grad(_module_out(model, leaf), leaf, grad_outputs=grads[t, lo:hi])
            torch.testing.assert_close(got[t, lo:hi], want, rtol=1e-4, atol=1e-5)
    assert float(got[2, LENGTHS[0] :].abs().max()) == 0.0  # no gradient leaks into another job


@pytest.mark.parametrize(
    "overrides",
    [{"hidden_act": "gelu_new"}, {"is_decoder": True}, {"position_embedding_type": "relative_key"}],
    ids=["tanh-gelu", "decoder", "relative-positions"],
)
def test_blocks_that_compute_something_else_are_not_written_out(overrides: dict[str, object]) -> None:
    model = _bert(**overrides)
    assert lastblock.block_of(model, model.encoder.layer[-1]) is None


def test_only_a_bert_models_last_block_is_its_output() -> None:
    model = _bert()
    assert lastblock.block_of(model.encoder, model.encoder.layer[-1]) is None  # not a BertModel
    assert lastblock.block_of(model, model.encoder.layer[0]) is None  # blocks follow it


def test_packed_blocks_equal_the_padded_model() -> None:
    """Embeddings and every block written out over texts packed without padding give the hidden
    states transformers' padded, masked forward gives (each text attends to its own rows only)."""
    model = _bert()
    torch.manual_seed(1)
    texts = [torch.randint(1, 50, (n,)).tolist() for n in LENGTHS]
    x, spans = lastblock.embed(model, texts)
    blocks = [lastblock.plain_block(model, layer) for layer in model.encoder.layer]
    assert all(b is not None for b in blocks)
    ids = torch.zeros(len(texts), max(LENGTHS), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(texts):
        ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
    want = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for i, block in enumerate(blocks):
        assert block is not None
        x = lastblock.forward_plain(block, x, spans)
        for row, (lo, hi) in enumerate(spans):
            torch.testing.assert_close(x[lo:hi], want[i + 1][row, : hi - lo], rtol=1e-5, atol=1e-5)


def test_plain_blocks_refuse_what_they_cannot_compute() -> None:
    model = _bert(hidden_act="gelu_new")
    assert lastblock.plain_block(model, model.encoder.layer[0]) is None
    model = _bert()
    assert lastblock.plain_block(model.encoder, model.encoder.layer[0]) is None  # not a BertModel
    assert lastblock.plain_block(model, model.encoder.layer[0]) is not None  # any block of one
