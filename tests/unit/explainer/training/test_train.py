"""SAE training: deterministic per seed, recovers a planted sparse dictionary, honest held-out metrics."""

from __future__ import annotations

import torch

from hif.explainer.training.train import TrainConfig, heldout_metrics, train_sae


def _planted(n: int, seed: int = 0) -> torch.Tensor:
    """Data that *is* sparse in a fixed 24-atom dictionary (3 atoms per row), in 32 dimensions."""
    atoms = torch.nn.functional.normalize(
        torch.randn(24, 32, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    gen = torch.Generator().manual_seed(seed + 1)
    idx = torch.randint(0, 24, (n, 3), generator=gen)
    coef = torch.rand(n, 3, generator=gen) * 2 + 0.5
    return torch.einsum("nk,nkd->nd", coef, atoms[idx]) + 0.5


CONFIG = TrainConfig(epochs=15, batch_tokens=256, lr=3e-3, dead_after_tokens=2_000)


def test_training_recovers_a_planted_dictionary() -> None:
    data = _planted(3_000)
    sae = train_sae(data.half(), d_sae=48, k=4, config=CONFIG)
    metrics = heldout_metrics(sae, _planted(1_000, seed=1).half())
    assert metrics["fvu"] < 0.1
    assert metrics["mean_l0"] <= 4
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(48), atol=1e-4)


def test_training_is_deterministic_per_seed() -> None:
    data = _planted(1_000).half()
    config = TrainConfig(epochs=3, batch_tokens=128, lr=1e-2)
    a = train_sae(data, d_sae=32, k=3, config=config)
    b = train_sae(data, d_sae=32, k=3, config=config)
    c = train_sae(data, d_sae=32, k=3, config=TrainConfig(epochs=3, batch_tokens=128, lr=1e-2, seed=7))
    assert torch.equal(a.W_enc, b.W_enc) and torch.equal(a.W_dec, b.W_dec)
    assert not torch.equal(a.W_dec, c.W_dec)


def test_dead_latents_are_counted_on_heldout_data() -> None:
    sae = train_sae(_planted(1_000).half(), d_sae=32, k=3, config=TrainConfig(epochs=2, batch_tokens=128))
    with torch.no_grad():
        sae.b_enc[:8] = -1e6  # these 8 latents can never fire
    metrics = heldout_metrics(sae, _planted(500, seed=2).half())
    assert metrics["dead_latents_pct"] >= 100 * 8 / 32
