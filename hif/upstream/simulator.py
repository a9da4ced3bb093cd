"""A seeded LLM simulator, named as such: it is not a model, it only behaves like an upstream.

It writes plausible sentences from a fixed vocabulary, counts usage, waits a time to first token and
a per-token decode time drawn from log-normal distributions around configured medians, and fails a
configured fraction of calls with a 500 or a 429. Everything is drawn from one seeded generator, so
a run with the same seed and the same request order produces the same text and timings.

>>> import asyncio
>>> from hif.upstream.settings import SimulatorSettings
>>> sim = Simulator(SimulatorSettings(sim_ttft_ms=0, sim_tokens_per_s=0, sim_seed=1))
>>> body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
>>> asyncio.run(sim.complete(body))["usage"]["completion_tokens"]
24
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from hif.errors import UpstreamUnavailableError
from hif.upstream.base import prompt_text
from hif.upstream.settings import SimulatorSettings

WORDS = [
    "the",
    "model",
    "reads",
    "each",
    "request",
    "and",
    "answers",
    "with",
    "a",
    "short",
    "and",
    "careful",
    "reply",
    "about",
    "the",
    "system",
    "gateway",
    "sidecar",
    "latency",
    "budget",
    "queue",
    "worker",
    "feature",
    "signal",
    "layer",
    "token",
    "sentence",
    "graph",
    "trace",
    "memory",
    "cache",
    "load",
    "test",
    "chaos",
    "report",
    "metric",
    "tenant",
    "policy",
    "stream",
    "result",
    "value",
    "error",
    "window",
    "clear",
    "simple",
    "fast",
    "steady",
    "useful",
    "small",
    "large",
    "early",
    "late",
    "first",
    "last",
    "next",
    "open",
    "safe",
]
SIM_NAME = "sim"


@dataclasses.dataclass(frozen=True, slots=True)
class SimPlan:
    """What one simulated call will do, drawn up front so the stream and non-stream paths agree."""

    status: int  # 200, 429 or 500
    tokens: tuple[str, ...]
    ttft_s: float
    token_s: float  # decode time per token
    prompt_tokens: int


class Simulator:
    """The built-in ``sim`` upstream; also served over HTTP by ``hif upstream-sim``."""

    name = SIM_NAME

    def __init__(self, settings: SimulatorSettings, *, clock: Any = time.time) -> None:
        self.settings = settings
        self._rng = random.Random(settings.sim_seed)
        self._ids = itertools.count(1)
        self._clock = clock

    def plan(self, body: dict[str, Any]) -> SimPlan:
        s, rng = self.settings, self._rng
        roll = rng.random()
        status = 500 if roll < s.sim_error_rate else 429 if roll < s.sim_error_rate + s.sim_429_rate else 200
        n = _max_tokens(body, s.sim_completion_tokens)
        tokens = tuple(self._words(n))
        ttft_s = _lognormal(rng, s.sim_ttft_ms / 1000.0, s.sim_ttft_jitter)
        tps = _lognormal(rng, s.sim_tokens_per_s, s.sim_tokens_per_s_jitter)
        token_s = 1.0 / tps if tps > 0 else 0.0
        prompt_tokens = max(1, len(prompt_text(body.get("messages")).split()))
        return SimPlan(
            status=status, tokens=tokens, ttft_s=ttft_s, token_s=token_s, prompt_tokens=prompt_tokens
        )

    def _words(self, n: int) -> list[str]:
        """``n`` tokens forming sentences of 5-12 words: the explainer splits on sentences."""
        out: list[str] = []
        sentence_left = self._rng.randint(5, 12)
        for i in range(n):
            word = self._rng.choice(WORDS)
            if i == 0 or out[-1].endswith(". "):
                word = word.capitalize()
            sentence_left -= 1
            end = sentence_left == 0 or i == n - 1
            out.append(word + (". " if end else " "))
            if sentence_left == 0:
                sentence_left = self._rng.randint(5, 12)
        if out:
            out[-1] = out[-1].rstrip()
        return out

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        plan = self.plan(body)
        _raise_for(plan)
        delay = plan.ttft_s + plan.token_s * len(plan.tokens)
        if delay > 0:
            await asyncio.sleep(delay)  # the simulated upstream's latency, not a stand-in for work
        return {
            "id": f"chatcmpl-sim-{next(self._ids):x}",
            "object": "chat.completion",
            "created": int(self._clock()),
            "model": str(body.get("model") or SIM_NAME),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(plan.tokens)},
                    "finish_reason": "length" if body.get("max_tokens") else "stop",
                }
            ],
            "usage": _usage(plan),
        }

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        plan = self.plan(body)
        _raise_for(plan)
        base = {
            "id": f"chatcmpl-sim-{next(self._ids):x}",
            "object": "chat.completion.chunk",
            "created": int(self._clock()),
            "model": str(body.get("model") or SIM_NAME),
        }
        if plan.ttft_s > 0:
            await asyncio.sleep(plan.ttft_s)
        yield {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
        for token in plan.tokens:
            if plan.token_s > 0:
                await asyncio.sleep(plan.token_s)
            yield {**base, "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}
        final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            final["usage"] = _usage(plan)
        yield final

    async def models(self) -> dict[str, Any]:
        return model_list([SIM_NAME])

    async def aclose(self) -> None:
        return None


def model_list(names: list[str]) -> dict[str, Any]:
    """OpenAI's model list for these names (the simulator's, and the upstream server's answer)."""
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "hif"} for n in names],
    }


def _raise_for(plan: SimPlan) -> None:
    if plan.status == 429:
        raise UpstreamUnavailableError("simulator: rate limited (injected 429)", upstream_status=429)
    if plan.status != 200:
        raise UpstreamUnavailableError("simulator: internal error (injected 500)", upstream_status=500)


def _usage(plan: SimPlan) -> dict[str, int]:
    n = len(plan.tokens)
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": n,
        "total_tokens": plan.prompt_tokens + n,
    }


def _max_tokens(body: dict[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, 4096)
    return default


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    """A draw around ``median``; 0 stays 0 so a zero-delay simulator never sleeps."""
    if median <= 0:
        return 0.0
    if sigma <= 0:
        return median
    return median * math.exp(rng.gauss(0.0, sigma))
