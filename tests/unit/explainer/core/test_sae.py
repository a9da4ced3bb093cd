"""TopK SAE math and the SAELens file layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hif.errors import FeaturesetError
from hif.explainer.core.sae import CFG_FILE, WEIGHTS_FILE, TopKSAE, fvu


@pytest.fixture
def sae() -> TopKSAE:
    torch.manual_seed(0)
    model = TopKSAE(d_in=16, d_sae=64, k=5)
    with torch.no_grad():
        model.b_enc.normal_()
        model.b_dec.normal_()
    return model


def test_encode_keeps_the_k_largest_preactivations_relu(sae: TopKSAE) -> None:
    x = torch.randn(10, 16)
    codes = sae.encode(x)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    assert ((codes > 0).sum(-1) <= 5).all()
    assert (codes >= 0).all()
    top = pre.topk(5, dim=-1)
    for row in range(10):
        kept = top.indices[row][top.values[row] > 0]
        assert torch.equal(codes[row, kept], pre[row, kept])
        others = torch.ones(64, dtype=torch.bool)
        others[top.indices[row]] = False
        assert (codes[row, others] == 0).all()


def test_decode_is_affine_in_the_codes(sae: TopKSAE) -> None:
    codes = sae.encode(torch.randn(4, 16))
    assert torch.allclose(sae.decode(codes), codes @ sae.W_dec + sae.b_dec)
    values, indices = sae.topk(sae.pre_acts(torch.randn(4, 16)))
    dense = torch.zeros(4, 64).scatter(-1, indices, values)
    assert torch.allclose(sae.decode_sparse(values, indices), sae.decode(dense), atol=1e-6)


def test_decoder_rows_have_unit_norm(sae: TopKSAE) -> None:
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(64), atol=1e-5)
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.normalize_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(64), atol=1e-5)


def test_save_load_round_trip_in_saelens_layout(sae: TopKSAE, tmp_path: Path) -> None:
    sae.cfg = {"hook_name": "blocks.4.hook_resid_post"}
    sae.save(tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    assert set(tensors) == {"W_enc", "W_dec", "b_enc", "b_dec"}
    assert tensors["W_enc"].shape == (16, 64) and tensors["W_dec"].shape == (64, 16)
    cfg = json.loads((tmp_path / CFG_FILE).read_text())
    assert cfg["d_in"] == 16 and cfg["d_sae"] == 64 and cfg["activation_fn_kwargs"] == {"k": 5}
    assert cfg["hook_name"] == "blocks.4.hook_resid_post"
    loaded = TopKSAE.load(tmp_path)
    x = torch.randn(7, 16)
    assert torch.equal(loaded.encode(x), sae.encode(x).detach())
    assert not any(p.requires_grad for p in loaded.parameters())


def test_fp16_save_keeps_reconstructions_close(sae: TopKSAE, tmp_path: Path) -> None:
    sae.save(tmp_path, dtype=torch.float16)
    loaded = TopKSAE.load(tmp_path)
    x = torch.randn(32, 16)
    assert fvu(sae(x).detach(), loaded(x)) < 1e-3


def test_load_rejects_missing_or_foreign_files(sae: TopKSAE, tmp_path: Path) -> None:
    with pytest.raises(FeaturesetError):
        TopKSAE.load(tmp_path / "nothing")
    sae.save(tmp_path)
    cfg = json.loads((tmp_path / CFG_FILE).read_text())
    (tmp_path / CFG_FILE).write_text(json.dumps({**cfg, "architecture": "jumprelu"}))
    with pytest.raises(FeaturesetError, match="TopK"):
        TopKSAE.load(tmp_path)
    (tmp_path / CFG_FILE).write_text(json.dumps(cfg))
    save_file({"W_enc": torch.zeros(16, 64)}, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(FeaturesetError, match="wrong tensors"):
        TopKSAE.load(tmp_path)


def test_fvu_is_zero_for_perfect_and_one_for_the_mean() -> None:
    x = torch.randn(100, 8)
    assert fvu(x, x) == 0.0
    assert fvu(x, x.mean(0, keepdim=True).expand_as(x)) == pytest.approx(1.0)
