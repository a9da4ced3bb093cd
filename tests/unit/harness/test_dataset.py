"""Prompt datasets: synthetic lengths in real tokens, files, sampling, and the bodies they make."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import orjson
import pytest

from hif.errors import ConfigError
from hif.harness.load.dataset import VOCABULARY, Order, load_dataset
from hif.harness.load.requests import ChatRequests
from hif.harness.load.settings import LoadSettings
from hif.tokens import load_tokenizer


def test_every_vocabulary_word_is_one_token_of_the_packaged_tokenizer() -> None:
    tok = load_tokenizer("auto")
    assert tok is not None
    assert tok.count([" ".join(VOCABULARY)]) == [len(VOCABULARY)]


def test_synthetic_lengths_follow_their_distributions_in_tokens() -> None:
    tok = load_tokenizer("auto")
    assert tok is not None
    rows = load_dataset("synthetic:prompt_tokens=normal(64,8),output_tokens=uniform(10,20)", seed=3, size=200)
    prompt_tokens = tok.count([r.messages[0]["content"] for r in rows])
    assert abs(statistics.mean(prompt_tokens) - 64) < 2.5 and 5 < statistics.stdev(prompt_tokens) < 11
    budgets = [r.max_tokens or 0 for r in rows]
    assert min(budgets) >= 10 and max(budgets) <= 20
    again = load_dataset(
        "synthetic:prompt_tokens=normal(64,8),output_tokens=uniform(10,20)", seed=3, size=200
    )
    assert again == rows  # seeded
    fixed = load_dataset("synthetic:prompt_tokens=fixed(12),output_tokens=lognormal(100,0.5)", seed=1, size=5)
    assert tok.count([r.messages[0]["content"] for r in fixed]) == [12] * 5


def test_jsonl_sharegpt_and_the_shipped_dataset(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps(
            {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
        )
        + "\n"
        + json.dumps({"prompt": "hello", "max_completion_tokens": 7})
        + "\n"
    )
    rows = load_dataset(str(jsonl), seed=0, size=10)
    assert [len(r.messages) for r in rows] == [2, 1] and [r.max_tokens for r in rows] == [None, 7]
    share = tmp_path / "sg.json"
    share.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "why?"}, {"from": "gpt", "value": "."}]}])
    )
    assert load_dataset(str(share), seed=0, size=10)[0].messages[0]["content"] == "why?"
    shipped = load_dataset("chat_small", seed=0, size=1000)
    assert len(shipped) == 32 and all(r.max_tokens for r in shipped)


@pytest.mark.parametrize(
    "spec",
    [
        "synthetic:prompt_tokens=gamma(1,2)",
        "synthetic:prompt_tokens=normal(1)",
        "synthetic:size=3",
        "missing.jsonl",
    ],
)
def test_bad_datasets_fail_naming_the_key(spec: str) -> None:
    with pytest.raises(ConfigError, match="dataset"):
        load_dataset(spec, seed=0, size=3)


def test_sequential_cycles_and_shuffle_draws_without_replacement() -> None:
    rng = random.Random(0)
    seq = Order(4, "sequential", 1)
    assert [seq.next(rng) for _ in range(6)] == [0, 1, 2, 3, 0, 1]
    shuffled = Order(5, "shuffle", 1)
    first, second = [shuffled.next(rng) for _ in range(5)], [shuffled.next(rng) for _ in range(5)]
    assert sorted(first) == sorted(second) == list(range(5))


def test_bodies_carry_the_datasets_budget_in_the_chosen_field(tmp_path: Path) -> None:
    settings = LoadSettings(
        results_dir=tmp_path,
        dataset="chat_small",
        dataset_sampling="sequential",
        max_tokens_field="max_completion_tokens",
        stream=True,
    )
    requests = ChatRequests(settings.request_mix())
    rng = random.Random(0)
    bodies = [orjson.loads(requests.draw(rng)[2].split(b"\r\n\r\n", 1)[1]) for _ in range(2)]
    assert bodies[0]["max_completion_tokens"] == 64 and "max_tokens" not in bodies[0]
    assert bodies[1]["max_completion_tokens"] == 160
    assert bodies[0]["stream"] is True and bodies[0]["stream_options"] == {"include_usage": True}
