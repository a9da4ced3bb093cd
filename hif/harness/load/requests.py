"""The chat requests a run sends: headers, prebuilt bodies, and the per-request draws.

Bodies are serialised once at start-up (a few prompts x plain / sentence / token) so the hot path
only picks prebuilt bytes: the generator spends its CPU on sending, not on JSON.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import orjson

from hif.harness.client import HttpClient
from hif.harness.load.dataset import Entry, Order, load_dataset
from hif.harness.load.pacing import parse_shard
from hif.harness.load.settings import MIX_TOKEN_SHARE, RequestMix

if TYPE_CHECKING:
    from hif.tokens import TokenCounter

PROMPTS = (
    "Summarise why the sky looks blue in two sentences.",
    "Give three tips for writing clear error messages.",
    "What is the capital of France, and why is it famous?",
    "Explain what a token bucket rate limiter does.",
    "Write a haiku about load testing.",
    "List two differences between TCP and UDP.",
    "Why do databases use write-ahead logs?",
    "Describe a sparse autoencoder in one paragraph.",
)
CHAT_PATH = "/v1/chat/completions"


class ChatRequests:
    def __init__(self, settings: RequestMix) -> None:
        self.s = settings
        self.headers: dict[str, str] = {"content-type": "application/json"}
        if settings.auth_token:
            self.headers["authorization"] = f"Bearer {settings.auth_token}"
        if settings.tenant_id:
            self.headers["x-tenant-id"] = settings.tenant_id
        shard_i, _ = parse_shard(settings.shard)
        self._seed_base = settings.seed * 1_000_003 + shard_i * 10_007
        self.entries = (
            load_dataset(settings.dataset, seed=settings.seed, size=settings.dataset_size)
            if settings.dataset
            else [Entry(({"role": "user", "content": p},), None) for p in PROMPTS]
        )
        builder = HttpClient(settings.base_url, headers=self.headers)
        self._bodies: dict[str | None, list[bytes]] = {
            g: [builder.build("POST", CHAT_PATH, orjson.dumps(self._body(e, g))) for e in self.entries]
            for g in (None, "sentence", "token")
        }
        # Prebuilt draws: the hot path returns one of these tuples, it builds none.
        self._plain = [(False, None, data) for data in self._bodies[None]]
        self._attach_rate = settings.attach_rate
        self._order = Order(len(self.entries), settings.dataset_sampling, self._seed_base)
        self._next = self._order.next

    def _body(self, entry: Entry, granularity: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.s.model,
            "messages": list(entry.messages),
            "stream": self.s.stream,
        }
        if self.s.stream:
            body["stream_options"] = {"include_usage": True}
        budget = entry.max_tokens or self.s.max_tokens  # the dataset's budget, else --max-tokens
        if budget:
            body[self.s.max_tokens_field] = budget
        if granularity is not None:
            body["explain"] = {"granularity": granularity, "features": self.s.features}
        return body

    def prompt_token_counts(self, tokenizer: TokenCounter | None) -> dict[bytes, int]:
        """Request bytes -> the prompt's local token count (counted once, at start-up)."""
        if tokenizer is None:
            return {}
        counts = tokenizer.count(["\n".join(m["content"] for m in e.messages) for e in self.entries])
        return {data: counts[i] for bodies in self._bodies.values() for i, data in enumerate(bodies)}

    def rng(self, worker: int) -> random.Random:
        """A per-worker RNG: runs with one seed draw the same attach/granularity sequence."""
        return random.Random(self._seed_base + worker)

    def draw(self, rng: random.Random) -> tuple[bool, str | None, bytes]:
        """(attached, granularity, request bytes) for one chat."""
        prompt = self._next(rng)
        if self._attach_rate <= 0 or rng.random() >= self._attach_rate:
            return self._plain[prompt]
        granularity = self.s.granularity
        if granularity == "mix":
            granularity = "token" if rng.random() < MIX_TOKEN_SHARE else "sentence"
        return True, granularity, self._bodies[granularity][prompt]
