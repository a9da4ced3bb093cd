"""Fixtures for the ML pipeline tests: a tiny random GPT-2 with a tiny SAE trained on it, built once."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

# The published graph schema (what users validate against); tests validate graphs with this very file.
GRAPH_SCHEMA_FILE = Path(__file__).parents[3] / "docs" / "schemas" / "graph.schema.json"

TINY_TEXTS = [
    "the cat sat on the mat . the dog ran to the park .",
    "a file object is returned by open . close the file when done .",
    "keys map to values in a dictionary . lookups are fast .",
    "threads share memory . processes do not share memory .",
    "the loop ends when the condition is false . break exits the loop .",
] * 4


@dataclasses.dataclass(frozen=True)
class TinyLM:
    root: Path
    registry: Path
    name: str = "tiny-gpt2-res0"


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in TINY_TEXTS for w in text.split()} | {"how", "do", "i", "?", "use", "it"})
    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(str(folder))


def build_tiny_lm(root: Path) -> TinyLM:
    """A 2-block GPT-2 (random weights, seed 0) on disk, and a 64-latent TopK SAE trained on block 0."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hif.explainer.core.model import SubjectModel
    from hif.explainer.featureset import load_registry
    from hif.explainer.training.train import TrainConfig, collect, token_windows, train_sae

    model_dir, sae_dir = root / "model", root / "sae"
    _tokenizer(model_dir)
    torch.manual_seed(0)
    vocab = len(__import__("json").loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"])
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(str(model_dir))
    registry = root / "featuresets.toml"
    registry.write_text(
        'default = "tiny-gpt2-res0"\n[featuresets."tiny-gpt2-res0"]\n'
        f'model = "{model_dir}"\nmodel_kind = "causal-lm"\nlayers = [0]\nlatents = 64\nk = 4\n'
        f'sae_path = "{sae_dir}"\nmax_nodes = 40\nmax_edges = 200\n'
    )
    registry.write_text(
        registry.read_text() + '[featuresets."tiny-gpt2-res01"]\n'
        f'model = "{model_dir}"\nmodel_kind = "causal-lm"\nlayers = [0, 1]\nlatents = 64\nk = 4\n'
        f'sae_path = "{root / "sae01"}"\nmax_nodes = 60\nmax_edges = 400\n'
    )
    subject = SubjectModel(model_dir, "causal-lm", device="cpu")
    windows = token_windows(subject, TINY_TEXTS, 10_000)
    for layer in (0, 1):
        acts = collect(subject, windows, layer)
        sae = train_sae(acts.x, d_sae=64, k=4, config=TrainConfig(epochs=30, batch_tokens=64, lr=3e-3))
        sae.cfg = {"hook_name": f"blocks.{layer}.hook_resid_post", "hook_layer": layer}
        sae.save(root / "sae01" / f"layer_{layer}")
        if layer == 0:
            sae.save(sae_dir)
    assert load_registry(registry).get("tiny-gpt2-res0").available
    assert load_registry(registry).get("tiny-gpt2-res01").available
    return TinyLM(root=root, registry=registry)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tiny tensors: one thread avoids OpenMP barrier waits, which dominate on a busy 2-core box.

    Only when a collected test module already imported torch: the worker tests here stay torch-free.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def graph_schema() -> dict[str, Any]:
    return dict(json.loads(GRAPH_SCHEMA_FILE.read_text()))


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> TinyLM:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_lm: TinyLM):  # type: ignore[no-untyped-def]
    from hif.explainer.core.pipeline import load_pipeline
    from hif.explainer.featureset import load_registry

    return load_pipeline(load_registry(tiny_lm.registry).get(tiny_lm.name), device="cpu", threads=1)


@pytest.fixture
def make_job():  # type: ignore[no-untyped-def]
    """A factory for Jobs: make_job(prompt, completion, granularity="sentence")."""
    from hif.store.base import Job

    def make(prompt: str, completion: str, granularity: str = "sentence", featureset: str = "x") -> Job:
        return Job(
            trace_id=f"t-{granularity}-{len(completion)}",
            tenant="acme",
            granularity=granularity,
            featureset=featureset,
            prompt=prompt,
            completion=completion,
            created_at=0.0,
            expires_at=float("inf"),
            budget_s=1.5,
        )

    return make
