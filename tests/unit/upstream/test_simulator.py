from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hif.errors import ConfigError, UpstreamUnavailableError
from hif.upstream.settings import SimulatorSettings
from hif.upstream.simulator import Simulator

BODY = {"model": "m", "messages": [{"role": "user", "content": "one two three"}]}


def fast(**kw: Any) -> Simulator:
    return Simulator(SimulatorSettings(sim_ttft_ms=0, sim_tokens_per_s=0, **kw))


async def collect(sim: Simulator, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [chunk async for chunk in sim.stream(body)]


def test_same_seed_same_text_and_usage() -> None:
    a = asyncio.run(fast(sim_seed=7).complete(BODY))
    b = asyncio.run(fast(sim_seed=7).complete(BODY))
    c = asyncio.run(fast(sim_seed=8).complete(BODY))
    text = a["choices"][0]["message"]["content"]
    assert text == b["choices"][0]["message"]["content"] != c["choices"][0]["message"]["content"]
    assert text.endswith(".") and text[0].isupper()
    # Counted with the explainer model's tokenizer, as the harness counts ("user: one two three": 5).
    assert a["usage"] == {"prompt_tokens": 5, "completion_tokens": 24, "total_tokens": 29}
    words = fast(sim_seed=7, sim_tokenizer="none")
    assert asyncio.run(words.complete(BODY))["usage"]["prompt_tokens"] == 4  # whitespace words


def test_max_tokens_bounds_the_completion() -> None:
    answer = asyncio.run(fast().complete({**BODY, "max_tokens": 5}))
    assert answer["usage"]["completion_tokens"] == 5


def test_stream_chunks_add_up_and_include_usage_on_request() -> None:
    chunks = asyncio.run(
        collect(fast(), {**BODY, "max_tokens": 6, "stream_options": {"include_usage": True}})
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert len({c["id"] for c in chunks}) == 1
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) == 6


def test_injected_error_and_429_rates() -> None:
    sim = fast(sim_error_rate=0.3, sim_429_rate=0.2, sim_seed=3)
    statuses = [sim.plan(BODY).status for _ in range(2000)]
    assert 0.25 < statuses.count(500) / 2000 < 0.35
    assert 0.15 < statuses.count(429) / 2000 < 0.25
    always = fast(sim_429_rate=1.0)
    with pytest.raises(UpstreamUnavailableError) as info:
        asyncio.run(always.complete(BODY))
    assert info.value.context["upstream_status"] == 429


def test_latency_distribution_is_centered_on_the_median() -> None:
    sim = Simulator(SimulatorSettings(sim_ttft_ms=100, sim_ttft_jitter=0.25, sim_tokens_per_s=50, sim_seed=1))
    plans = [sim.plan(BODY) for _ in range(1000)]
    ttfts = sorted(p.ttft_s for p in plans)
    assert 0.09 < ttfts[500] < 0.11 and ttfts[0] < ttfts[-1]
    assert 0.018 < sorted(p.token_s for p in plans)[500] < 0.022


def test_delay_is_applied() -> None:
    sim = Simulator(SimulatorSettings(sim_ttft_ms=30, sim_ttft_jitter=0, sim_tokens_per_s=0))
    started = time.perf_counter()
    asyncio.run(sim.complete(BODY))
    assert time.perf_counter() - started >= 0.03


def test_bad_settings_name_their_key() -> None:
    with pytest.raises(ConfigError, match="sim_error_rate"):
        SimulatorSettings(sim_error_rate=1.5)


def test_prompt_text_skips_non_text_parts() -> None:
    from hif.upstream.base import prompt_text

    messages = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image", "text": None}, "junk"]},
        {"role": "tool", "content": None},
        "not a message",
    ]
    assert prompt_text(messages) == "user: a"


def test_usage_is_what_the_harness_tokenizer_counts_in_the_stream() -> None:
    from hif.tokens import load_tokenizer

    tok = load_tokenizer("auto")
    assert tok is not None
    for n in (1, 2, 3, 7, 40):
        chunks = asyncio.run(
            collect(fast(sim_seed=n), {**BODY, "max_tokens": n, "stream_options": {"include_usage": True}})
        )
        pieces = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
        assert tok.count(["".join(pieces)]) == [n] == [chunks[-1]["usage"]["completion_tokens"]]


def test_reasoning_deltas_come_first_and_chunks_carry_several_tokens() -> None:
    sim = fast(sim_reasoning_tokens=4, sim_chunk_tokens=3)
    chunks = asyncio.run(collect(sim, {**BODY, "max_tokens": 7}))
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-1]]
    assert [next(iter(d)) for d in deltas] == ["reasoning_content"] * 2 + ["content"] * 3
    assert "".join(d["content"] for d in deltas[2:]).count(" ") >= 4  # 7 tokens in 3 chunks


def test_prefill_and_queueing_lengthen_ttft_and_a_batch_slows_decode() -> None:
    long_body = {"model": "m", "messages": [{"role": "user", "content": "word " * 400}], "max_tokens": 1}

    async def first_chunk_s(sim: Simulator, body: dict[str, Any]) -> float:
        t0 = time.monotonic()
        async for _ in sim.stream(body):
            return time.monotonic() - t0
        raise AssertionError("no chunk")

    prefill = Simulator(SimulatorSettings(sim_ttft_ms=0, sim_tokens_per_s=0, sim_prefill_tokens_per_s=4000))
    assert asyncio.run(first_chunk_s(prefill, long_body)) >= 0.1  # ~401 tokens at 4000/s

    async def two_at_once(sim: Simulator) -> list[float]:
        return list(await asyncio.gather(first_chunk_s(sim, BODY), first_chunk_s(sim, BODY)))

    queued = Simulator(
        SimulatorSettings(
            sim_ttft_ms=50, sim_ttft_jitter=0, sim_tokens_per_s=0, sim_max_batch=1, sim_prefill_tokens_per_s=0
        )
    )
    first, second = sorted(asyncio.run(two_at_once(queued)))
    assert first < 0.09 and second >= 0.1  # the second waited for the only slot

    batch = Simulator(
        SimulatorSettings(sim_tokens_per_s=100, sim_tokens_per_s_jitter=0, sim_batch_slowdown=0.5)
    )
    plan = batch.plan({**BODY, "max_tokens": 1})
    batch.decoding = 3
    assert batch._token_s(plan) == pytest.approx(0.01 * 2.0)
