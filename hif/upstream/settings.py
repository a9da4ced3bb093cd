"""Settings of the upstream simulator and of `hif upstream-sim`."""

from __future__ import annotations

import dataclasses
import typing

from hif.config import SERVERS, option, positive
from hif.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulatorSettings:
    """The upstream LLM simulator (``--upstream sim`` and ``hif upstream-sim``): seeded, not a model."""

    SECTION: typing.ClassVar[str] = "simulator"

    sim_ttft_ms: float = option(25.0, help="simulator median time to first token (0 = none)")
    sim_ttft_jitter: float = option(0.25, help="simulator TTFT log-normal sigma (0 = fixed)")
    sim_tokens_per_s: float = option(400.0, help="simulator median decode speed (0 = instant)")
    sim_tokens_per_s_jitter: float = option(0.2, help="simulator decode-speed log-normal sigma (0 = fixed)")
    sim_completion_tokens: int = option(24, help="simulator completion length when max_tokens is unset")
    sim_error_rate: float = option(0.0, help="fraction of simulator calls that fail with a 500")
    sim_429_rate: float = option(0.0, help="fraction of simulator calls that answer 429")
    sim_seed: int = option(0, help="seed for the simulator's text and timing")
    sim_prefill_tokens_per_s: float = option(
        20000.0, help="simulator prefill speed: TTFT grows by prompt tokens / this (0 = no prefill time)"
    )
    sim_max_batch: int = option(
        64, help="simulator streams decoded at once; more wait in a queue (0 = no bound)"
    )
    sim_batch_slowdown: float = option(
        0.01, help="simulator decode slows by this fraction per extra concurrent stream (a decode batch)"
    )
    sim_reasoning_tokens: int = option(0, help="simulator reasoning deltas streamed before the content")
    sim_chunk_tokens: int = option(1, help="simulator tokens per streamed chunk")
    sim_tokenizer: str = option(
        "auto", help="count usage with this tokenizer: auto (the explainer model's package), none (words)"
    )

    def __post_init__(self) -> None:
        positive("sim_ttft_ms", self.sim_ttft_ms, allow_zero=True)
        positive("sim_ttft_jitter", self.sim_ttft_jitter, allow_zero=True)
        positive("sim_tokens_per_s", self.sim_tokens_per_s, allow_zero=True)
        positive("sim_tokens_per_s_jitter", self.sim_tokens_per_s_jitter, allow_zero=True)
        positive("sim_completion_tokens", self.sim_completion_tokens)
        positive("sim_prefill_tokens_per_s", self.sim_prefill_tokens_per_s, allow_zero=True)
        positive("sim_max_batch", self.sim_max_batch, allow_zero=True)
        positive("sim_batch_slowdown", self.sim_batch_slowdown, allow_zero=True)
        positive("sim_reasoning_tokens", self.sim_reasoning_tokens, allow_zero=True)
        positive("sim_chunk_tokens", self.sim_chunk_tokens)
        for key in ("sim_error_rate", "sim_429_rate"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(key, f"must be a fraction 0..1, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class UpstreamSimSettings:
    """Where ``hif upstream-sim`` listens."""

    SECTION: typing.ClassVar[str] = "upstream_sim"

    sim_host: str = option("127.0.0.1", help="address the simulator server listens on")
    sim_port: int = option(8000, help="simulator server port")
    sim_server: str = option("uvicorn", help="HTTP server stack for the simulator", choices=SERVERS)
