"""What one capacity search offers and judges: every ``option`` is a CLI flag, ``HIF_*`` env var and
file key (table ``[capacity]``); ``--slo`` is repeatable, as for the load runner."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from hif.config import option, positive
from hif.errors import ConfigError
from hif.harness.capacity.gates import DEFAULT_MIN_TAIL, Gate, parse_gates
from hif.harness.load.dataset import MAX_SYNTHETIC_TOKENS
from hif.harness.load.settings import ARRIVALS, GRANULARITIES, LoadSettings

DEFAULT_RESULTS_DIR = Path("tests/load/results/capacity")
PROMPT_AXIS_ENTRIES = 200


@dataclasses.dataclass(frozen=True, kw_only=True)
class CapacitySettings:
    SECTION: typing.ClassVar[str] = "capacity"

    base_url: str = option("http://localhost:8080", help="gateway base URL")
    auth_token: str | None = option(None, help="send Authorization: Bearer TOKEN")
    tenant_id: str | None = option(None, help="send x-tenant-id: TID")
    features: str | None = option(None, help="featureset requested for explanations")
    granularity: str = option("sentence", help="explanation granularity", choices=GRANULARITIES)
    model: str = option("sim", help="model name sent in chat requests")
    max_tokens: int = option(16, help="max_tokens sent in chat requests (0 = omit)")
    arrival: str = option("poisson", help="open-loop arrival process of every step", choices=ARRIVALS)
    rate_min: float = option(5.0, help="lowest arrival rate tried, requests/s (the first step)")
    rate_max: float = option(200.0, help="highest arrival rate tried, requests/s")
    attach_rates: str = option("0,0.1,0.3", help="comma-separated attach rates, one search each")
    prompt_tokens: str = option(
        "",
        help="comma-separated prompt lengths in tokens (e.g. 128,512,2048): one search per attach rate "
        "and length, each step a synthetic dataset of that fixed prompt length (none: one search per "
        "attach rate, with --dataset's prompts)",
    )
    dataset: str = option(
        "", help="prompts of every step, as the load runner's --dataset (none: its default)"
    )
    step_seconds: float = option(15.0, help="measured length of a step (after its warm-up)")
    warmup_seconds: float = option(3.0, help="start of every step that is offered but not judged")
    growth: float = option(2.0, help="bracketing: each passing step multiplies the rate by this")
    resolution: float = option(0.1, help="bisection stops when (lowest fail / highest pass - 1) <= this")
    max_steps: int = option(6, help="steps per attach rate, repeats included")
    noise_margin: float = option(
        0.1, help="a gate within this share of its threshold repeats the step (merged with the first)"
    )
    min_tail_samples: int = option(
        DEFAULT_MIN_TAIL, help="values beyond a percentile a gate needs (p95: 20 -> 400 values)"
    )
    concurrency: int = option(64, help="workers (max in flight) of every step")
    timeout_seconds: float = option(15.0, help="per-request timeout")
    drain_seconds: float = option(30.0, help="after a step, time allowed for open trace polls")
    idle_timeout_seconds: float = option(
        120.0, help="before a step, wait at most this long for an empty explainer queue and no backpressure"
    )
    results_dir: Path = option(DEFAULT_RESULTS_DIR, help="capacity.json, capacity.md and one folder per step")
    metrics_url_gateway: str | None = option(
        None, help="gateway /metrics (default: base-url host :9091; off)"
    )
    metrics_url_explainer: str | None = option(
        None, help="explainer /metrics (default: base-url host :9090; off)"
    )
    seed: int = option(0, help="seed of the arrival and attach draws")
    slo: tuple[str, ...] = ()  # NAME=VALUE gates, repeatable on the CLI

    def __post_init__(self) -> None:
        for key in ("rate_min", "rate_max", "step_seconds", "max_steps", "concurrency", "min_tail_samples"):
            positive(key, getattr(self, key))
        positive("warmup_seconds", self.warmup_seconds, allow_zero=True)
        positive("drain_seconds", self.drain_seconds, allow_zero=True)
        positive("resolution", self.resolution)
        if self.rate_max < self.rate_min:
            raise ConfigError("rate_max", f"must be >= rate_min ({self.rate_min}), got {self.rate_max}")
        if self.growth <= 1.0:
            raise ConfigError("growth", f"must be > 1, got {self.growth}")
        self.attach_list  # noqa: B018 - validates
        if self.prompt_list and self.dataset:
            raise ConfigError("prompt_tokens", "--prompt-tokens builds each step's dataset; drop --dataset")
        self.gates  # noqa: B018
        self.step_settings(1.0, 0.0, Path("."))  # the load runner's own checks, at start-up

    @property
    def attach_list(self) -> list[float]:
        try:
            out = [float(x) for x in self.attach_rates.split(",") if x.strip()]
        except ValueError as exc:
            raise ConfigError(
                "attach_rates", f"{self.attach_rates!r}: expected numbers like 0,0.1,0.3"
            ) from exc
        if not out or any(not 0.0 <= a <= 1.0 for a in out):
            raise ConfigError("attach_rates", f"{self.attach_rates!r}: fractions 0..1, at least one")
        return out

    @property
    def prompt_list(self) -> list[int]:
        """The prompt lengths searched; empty: no prompt-length axis."""
        try:
            out = [int(x) for x in self.prompt_tokens.split(",") if x.strip()]
        except ValueError as exc:
            raise ConfigError(
                "prompt_tokens", f"{self.prompt_tokens!r}: expected token counts like 128,512,2048"
            ) from exc
        if any(not 1 <= n <= MAX_SYNTHETIC_TOKENS for n in out):
            raise ConfigError("prompt_tokens", f"{self.prompt_tokens!r}: each 1..{MAX_SYNTHETIC_TOKENS}")
        return out

    def plan(self) -> list[tuple[float, int | None]]:
        """The searches, in order: (attach rate, prompt tokens) pairs, every attach rate at every
        prompt length (prompt tokens None: no prompt-length axis).

        >>> CapacitySettings(slo=("chat_p95_ms=500",), attach_rates="0,0.3", prompt_tokens="128,2048").plan()
        [(0.0, 128), (0.0, 2048), (0.3, 128), (0.3, 2048)]
        """
        prompts: list[int | None] = list(self.prompt_list) or [None]
        return [(a, p) for a in self.attach_list for p in prompts]

    @property
    def gates(self) -> list[Gate]:
        return parse_gates(self.slo)

    def require_gates(self) -> None:
        """A search needs something to judge (checked when it starts: the CLI adds ``--slo`` after
        the other options are built)."""
        if not self.slo:
            raise ConfigError("slo", "a capacity search needs at least one --slo gate (e.g. chat_p95_ms=500)")

    def step_settings(
        self, rate: float, attach: float, results_dir: Path, prompt_tokens: int | None = None, **extra: Any
    ) -> LoadSettings:
        """One step: an open-loop load run at ``rate`` req/s and ``attach``, warm-up included; with
        ``prompt_tokens``, on a synthetic dataset whose every prompt is that long (answers keep
        ``max_tokens``)."""
        dataset = self.dataset
        if prompt_tokens is not None:
            dataset = f"synthetic:prompt_tokens={prompt_tokens}"
            if self.max_tokens:
                dataset += f",output_tokens={self.max_tokens}"
            # every prompt has one length: a few hundred distinct texts suffice, and each step
            # builds its request bodies at start-up (2048-token prompts x 1000 would be ~12 MB)
            extra = {"dataset_size": PROMPT_AXIS_ENTRIES, **extra}
        return LoadSettings(
            base_url=self.base_url,
            concurrency=self.concurrency,
            duration_seconds=self.warmup_seconds + self.step_seconds,
            attach_rate=attach,
            granularity=self.granularity,
            features=self.features,
            timeout_seconds=self.timeout_seconds,
            auth_token=self.auth_token,
            tenant_id=self.tenant_id,
            results_dir=results_dir,
            arrival_rate=rate,
            arrival=self.arrival,
            drain_seconds=self.drain_seconds,
            model=self.model,
            max_tokens=self.max_tokens,
            live="off",
            metrics_url_gateway=self.metrics_url_gateway,
            metrics_url_explainer=self.metrics_url_explainer,
            slo=self.slo,
            dataset=dataset,
            **{"seed": self.seed, **extra},
        )

    def public(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["results_dir"] = str(self.results_dir)
        data["slo"] = list(self.slo)
        data["attach_rates"] = self.attach_list
        data["prompt_tokens"] = self.prompt_list
        if data.get("auth_token"):
            data["auth_token"] = "***"
        return data
