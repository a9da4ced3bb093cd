"""Torch-free settings shared by the gateway (shedding) and the explainer service.

``SlaSettings`` is the explanation budget both sides read; ``ExplainerSettings`` configures the workers
and their supervisor; ``FeaturesetSettings`` names the featureset registry."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from hif.config import option, positive
from hif.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlaSettings:
    """Explanation budgets shared by the gateway (shedding) and the explainer (backpressure)."""

    SECTION: typing.ClassVar[str] = "sla"

    sentence_budget_s: float = option(1.5, help="explanation SLA budget for sentence granularity")
    token_budget_s: float = option(3.5, help="explanation SLA budget for token granularity")
    trace_ttl_s: float = option(60.0, help="time after which an unfinished explanation is expired")

    def __post_init__(self) -> None:
        positive("sentence_budget_s", self.sentence_budget_s)
        positive("token_budget_s", self.token_budget_s)
        positive("trace_ttl_s", self.trace_ttl_s)

    def budget_s(self, granularity: str) -> float:
        return self.token_budget_s if granularity == "token" else self.sentence_budget_s


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeaturesetSettings:
    SECTION: typing.ClassVar[str] = "featuresets"

    featuresets: Path | None = option(
        None, help="featureset registry (TOML); default: the registry shipped in hif/explainer"
    )


DEVICES = ("auto", "cpu", "cuda")
# Where the torch pipeline lives; a string, so that reading settings never imports torch.
DEFAULT_PIPELINE_LOADER = "hif.explainer.core.pipeline:load_pipeline"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplainerSettings:
    """``hif explainer``: worker processes, leases, batching, retries, backpressure thresholds."""

    SECTION: typing.ClassVar[str] = "explainer"

    workers: int = option(1, help="explainer worker processes")
    explainer_metrics_port: int = option(9090, help="Prometheus /metrics port for all workers (0 disables)")
    explainer_host: str = option("127.0.0.1", help="address the explainer metrics server listens on")
    device: str = option("auto", help="torch device for the pipeline", choices=DEVICES)
    torch_threads: int = option(0, help="torch intra-op threads per worker (0: (cores - 1) / workers)")
    visibility_timeout_s: float = option(
        30.0, help="lease time before a silent worker's job is handed out again"
    )
    consumer_heartbeat_s: float = option(
        1.0, help="how often a worker says it is alive; 3 missed beats release its leases to others"
    )
    batch_max_tokens: int = option(2048, help="most (estimated) tokens in one extract forward pass")
    lease_max_jobs: int = option(8, help="most jobs one worker leases at a time")
    attribution_batching: str = option(
        "on",
        help="gradient attribution of a batch's jobs in shared passes (off: one job at a time)",
        choices=("on", "off"),
    )
    max_attempts: int = option(3, help="deliveries before a job that keeps killing workers is failed")
    persist_retries: int = option(3, help="blob-write retries before the trace is failed")
    persist_backoff_s: float = option(0.05, help="first persist retry delay (doubles each retry)")
    tick_s: float = option(0.25, help="how often the supervisor sweeps expiries and updates backpressure")
    soft_lag_s: float | None = option(
        None, help="queue lag that raises backpressure to soft (default: half the sentence budget)"
    )
    hard_lag_s: float | None = option(
        None, help="queue lag that raises backpressure to hard (default: the sentence budget)"
    )
    soft_depth: int = option(64, help="queue depth that raises backpressure to soft")
    hard_depth: int = option(256, help="queue depth that raises backpressure to hard")
    recover_ratio: float = option(
        0.5, help="a level drops once lag and depth are below this share of its threshold"
    )
    recover_hold_s: float = option(1.0, help="how long pressure must stay low before the level drops")
    pipeline_loader: str = option(
        DEFAULT_PIPELINE_LOADER, help="module:function that loads a featureset's pipeline"
    )
    log_level: str = option("info", help="log level", choices=("debug", "info", "warning", "error"))

    def __post_init__(self) -> None:
        positive("workers", self.workers)
        if not 0 <= self.explainer_metrics_port <= 65535:
            port = self.explainer_metrics_port
            raise ConfigError("explainer_metrics_port", f"must be a port number 0..65535, got {port!r}")
        positive("torch_threads", self.torch_threads, allow_zero=True)
        positive("visibility_timeout_s", self.visibility_timeout_s)
        positive("consumer_heartbeat_s", self.consumer_heartbeat_s)
        positive("batch_max_tokens", self.batch_max_tokens)
        positive("lease_max_jobs", self.lease_max_jobs)
        positive("max_attempts", self.max_attempts)
        positive("persist_retries", self.persist_retries, allow_zero=True)
        positive("persist_backoff_s", self.persist_backoff_s, allow_zero=True)
        positive("tick_s", self.tick_s)
        positive("soft_depth", self.soft_depth)
        positive("hard_depth", self.hard_depth)
        positive("recover_hold_s", self.recover_hold_s, allow_zero=True)
        if not 0.0 < self.recover_ratio <= 1.0:
            raise ConfigError("recover_ratio", f"must be within (0, 1], got {self.recover_ratio!r}")
        for key in ("soft_lag_s", "hard_lag_s"):
            value = getattr(self, key)
            if value is not None:
                positive(key, value)
