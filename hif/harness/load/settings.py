"""The load run's settings, and the narrow views of them that each part of the runner takes.

:class:`LoadSettings` is the whole run (every field a CLI flag, ``HIF_*`` env var and file key).
The parts get only what they use: the chat requests a :class:`RequestMix`, the trace poller a
:class:`PollPolicy`, the pacing a :class:`Share` of this shard's workers and rates.

Exit codes: 0 ok, 1 an SLO gate failed, 2 pre-flight or configuration error (raised as
:class:`~hif.errors.HarnessError`), 3 the run is invalid because the generator was the bottleneck.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from hif.config import option, positive
from hif.errors import ConfigError
from hif.harness import gates
from hif.harness.load.pacing import parse_shard, share
from hif.harness.prometheus import default_metrics_urls

GRANULARITIES = ("sentence", "token", "mix")
SAMPLINGS = ("random", "sequential", "shuffle")  # hif.harness.load.dataset.Order
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
ARRIVALS = ("constant", "poisson")
LIVE_MODES = ("auto", "rich", "plain", "off")
# The runbook's gates; hif.harness.gates.REGISTRY holds these and every other one.
SLO_NAMES = ("chat_p95_ms", "error_rate", "sentence_p95_ms", "token_p95_ms", "expired_failed_rate")
DEFAULT_RESULTS_DIR = Path("tests/load/results")
RUNBOOK_FEATURES = "sae-gpt4-2m"  # what a run asks for when no featureset is given (see preflight.py)
RUNBOOK_SLOS = gates.RUNBOOK_SLOS  # the runbook's example targets, defined with the gate registry
METRICS_OFF = "off"  # --metrics-url-gateway off: do not scrape that endpoint
MIX_TOKEN_SHARE = 0.2  # --granularity mix: 80% sentence / 20% token, drawn per request

EXIT_OK, EXIT_SLO_FAILED, EXIT_PREFLIGHT, EXIT_INVALID = 0, 1, 2, 3


def parse_slos(items: typing.Iterable[str]) -> dict[str, float]:
    """``["chat_p95_ms=500", "ttft_p95_ms=800,rps>=100"]`` -> thresholds; the gate registry
    (:mod:`hif.harness.gates`) knows every name, its unit and direction."""
    return gates.parse_slos(items)


def metrics_urls(base_url: str, gateway: str | None, explainer: str | None) -> dict[str, str]:
    """``{"gateway": url, "explainer": url}``: given URLs, else the runbook's ports on the target's host;
    ``off`` leaves one out."""
    default_gateway, default_explainer = default_metrics_urls(base_url)
    urls = {"gateway": gateway or default_gateway, "explainer": explainer or default_explainer}
    return {k: v for k, v in urls.items() if v != METRICS_OFF}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadSettings:
    """One load run. Every ``option`` is a CLI flag (``--base-url``), ``HIF_*`` env var and file key."""

    SECTION: typing.ClassVar[str] = "load"

    base_url: str = option("http://localhost:8080", help="gateway base URL")
    concurrency: int = option(10, help="workers, one keep-alive connection each (max in flight)")
    duration_seconds: float = option(60.0, help="how long load is offered")
    attach_rate: float = option(0.0, help="fraction of chats that ask for an explanation (0..1)")
    granularity: str = option(
        "sentence", help="explanation granularity; mix = 80%% sentence / 20%% token", choices=GRANULARITIES
    )
    features: str | None = option(
        None,
        help=f"featureset requested for explanations (none given: {RUNBOOK_FEATURES}, or the server's "
        "default where that is not served)",
    )
    timeout_seconds: float = option(15.0, help="per-request timeout (connect + answer)")
    auth_token: str | None = option(None, help="send Authorization: Bearer TOKEN")
    tenant_id: str | None = option(None, help="send x-tenant-id: TID")
    rps_limit: float = option(0.0, help="one token bucket shared by all workers, requests/s (0 = unlimited)")
    results_dir: Path = option(DEFAULT_RESULTS_DIR, help="where result files are written")
    arrival_rate: float = option(0.0, help="open loop: requests/s offered on a schedule (0 = closed loop)")
    arrival: str = option("constant", help="open-loop arrival process", choices=ARRIVALS)
    processes: int = option(1, help="spread workers over N processes (histograms merged exactly)")
    shard: str = option("1/1", help="this generator's share i/N of concurrency and rate (numbered from 1)")
    seed: int = option(0, help="seed for attach/granularity draws and Poisson arrivals")
    max_requests: int = option(0, help="stop after this many chat requests (0 = no bound but the duration)")
    poll_deadline_seconds: float = option(
        75.0, help="give up polling a trace this long after its chat answer"
    )
    poll_initial_ms: float = option(25.0, help="first trace-status poll delay; doubles by 1.5x per poll")
    poll_max_ms: float = option(500.0, help="largest delay between two polls of one trace")
    drain_seconds: float = option(90.0, help="after load stops, time allowed for open polls to finish")
    bucket_seconds: float = option(1.0, help="time-series bucket and histogram-log interval")
    late_ms: float = option(10.0, help="a send later than its intended start by more than this is `late`")
    model: str = option("sim", help="model name sent in chat requests")
    max_tokens: int = option(16, help="max_tokens sent in chat requests (0 = omit)")
    live: str = option(
        "auto", help="live view: auto (rich on a TTY), rich, plain (stderr lines), off", choices=LIVE_MODES
    )
    metrics_url_gateway: str | None = option(
        None, help="gateway /metrics scraped every 5 s into metrics.jsonl (default: base-url host :9091; off)"
    )
    metrics_url_explainer: str | None = option(
        None, help="explainer /metrics scraped every 5 s (default: base-url host :9090; off)"
    )
    append: bool = option(False, help="append to result files instead of truncating them (soak segments)")
    run_id: str = option("", help="label stored with every record of this run (default: start time)")
    dataset: str = option(
        "",
        help="prompts: synthetic:prompt_tokens=...,output_tokens=..., chat_small, or a JSONL/ShareGPT file",
    )
    dataset_sampling: str = option(
        "random", help="dataset order: random (with replacement), sequential, shuffle", choices=SAMPLINGS
    )
    dataset_size: int = option(1000, help="load at most this many dataset entries (bodies built at start-up)")
    max_tokens_field: str = option(
        "max_tokens", help="request field for the answer budget", choices=MAX_TOKENS_FIELDS
    )
    stream: bool = option(False, help="stream chats (SSE): TTFT, TTFO, ITL and TPOT per request")
    tokenizer: str = option(
        "auto", help="local token counts: auto (the explainer model's package), none, or a tokenizer.json"
    )
    slo: tuple[str, ...] = ()  # NAME=VALUE gates; repeatable on the CLI, so not a plain option
    # Files of the folder a fresh run leaves in place (the soak keeps its soak_summary.json).
    keep_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive("concurrency", self.concurrency)
        positive("duration_seconds", self.duration_seconds)
        positive("timeout_seconds", self.timeout_seconds)
        positive("rps_limit", self.rps_limit, allow_zero=True)
        positive("arrival_rate", self.arrival_rate, allow_zero=True)
        positive("processes", self.processes)
        positive("max_requests", self.max_requests, allow_zero=True)
        positive("poll_deadline_seconds", self.poll_deadline_seconds)
        positive("poll_initial_ms", self.poll_initial_ms)
        positive("poll_max_ms", self.poll_max_ms)
        positive("drain_seconds", self.drain_seconds, allow_zero=True)
        positive("bucket_seconds", self.bucket_seconds)
        positive("dataset_size", self.dataset_size)
        if not 0.0 <= self.attach_rate <= 1.0:
            raise ConfigError("attach_rate", f"must be a fraction 0..1, got {self.attach_rate!r}")
        if not self.base_url.startswith("http://"):
            raise ConfigError("base_url", f"must be an http:// URL, got {self.base_url!r}")
        if self.rps_limit and self.arrival_rate:
            raise ConfigError(
                "arrival_rate", "use --rps-limit (closed loop) or --arrival-rate (open loop), not both"
            )
        parse_shard(self.shard)
        parse_slos(self.slo)

    @property
    def shard_index(self) -> tuple[int, int]:
        return parse_shard(self.shard)

    @property
    def slos(self) -> dict[str, float]:
        return parse_slos(self.slo)

    @property
    def open_loop(self) -> bool:
        return self.arrival_rate > 0

    def request_mix(self) -> RequestMix:
        return RequestMix(
            base_url=self.base_url,
            auth_token=self.auth_token,
            tenant_id=self.tenant_id,
            model=self.model,
            max_tokens=self.max_tokens,
            features=self.features or RUNBOOK_FEATURES,
            attach_rate=self.attach_rate,
            granularity=self.granularity,
            seed=self.seed,
            shard=self.shard,
            stream=self.stream,
            dataset=self.dataset,
            dataset_sampling=self.dataset_sampling,
            dataset_size=self.dataset_size,
            max_tokens_field=self.max_tokens_field,
        )

    def poll_policy(self) -> PollPolicy:
        return PollPolicy(
            initial_ms=self.poll_initial_ms,
            max_ms=self.poll_max_ms,
            deadline_s=self.poll_deadline_seconds,
            tenant_id=self.tenant_id,
            shard=self.shard,
        )

    def metrics_urls(self) -> dict[str, str]:
        """Endpoints this process scrapes: none on shards after the first (one scrape per run)."""
        if self.shard_index[0] != 1:
            return {}
        return metrics_urls(self.base_url, self.metrics_url_gateway, self.metrics_url_explainer)

    def public(self) -> dict[str, Any]:
        """Settings as stored in summary.json (the token is never written to disk)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["results_dir"] = str(self.results_dir)
        data["slo"] = list(self.slo)
        data["keep_files"] = list(self.keep_files)
        if data.get("auth_token"):
            data["auth_token"] = "***"
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class RequestMix:
    """What the chat requests are made of: target, headers, body fields and the per-request draws."""

    base_url: str
    auth_token: str | None
    tenant_id: str | None
    model: str
    max_tokens: int
    features: str
    attach_rate: float
    granularity: str
    seed: int
    shard: str
    stream: bool = False
    dataset: str = ""
    dataset_sampling: str = "random"
    dataset_size: int = 1000
    max_tokens_field: str = "max_tokens"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """How one attached trace is followed, and the labels its explanation record carries."""

    initial_ms: float
    max_ms: float
    deadline_s: float
    tenant_id: str | None
    shard: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Share:
    """What this process offers: its shard's part of the run's concurrency, rates and bound."""

    workers: int
    rps_limit: float
    arrival_rate: float
    max_requests: int

    @property
    def target_rps(self) -> float:
        return self.arrival_rate or self.rps_limit


def local_share(settings: LoadSettings) -> Share:
    """Split the totals of ``settings`` by its ``--shard i/N`` (workers and bounds as integers)."""
    i, n = settings.shard_index
    workers = share(settings.concurrency, i, n)
    if workers < 1:
        raise ConfigError("concurrency", f"{settings.concurrency} workers cannot be split into {n} shards")
    return Share(
        workers=workers,
        rps_limit=settings.rps_limit / n,
        arrival_rate=settings.arrival_rate / n,
        max_requests=share(settings.max_requests, i, n) if settings.max_requests else 0,
    )
