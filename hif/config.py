"""Frozen settings, built once at start-up.

One definition per option serves as CLI flag, ``HIF_*`` environment variable and config-file key
(as Locust does). Precedence: CLI > env > file > default. A bad value fails at start-up with a
:class:`~hif.errors.ConfigError` naming its key.

>>> s = build(GatewaySettings, cli={"port": 9000}, env={"HIF_METRICS_PORT": "9191"})
>>> (s.port, s.metrics_port)
(9000, 9191)

Each settings class is a frozen, keyword-only dataclass whose fields are declared with
:func:`option`. ``add_options(parser, GatewaySettings, StoreSettings)`` adds their flags to an
argparse parser (deduplicating shared names); ``build(cls, cli=ns, file=path)`` makes the object.
The config file is TOML: keys at top level, or under a table named by the class's ``SECTION``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from hif.errors import ConfigError

T = TypeVar("T")
ENV_PREFIX = "HIF_"
_MISSING = object()


def option(
    default: Any,
    *,
    help: str,
    flag: str | None = None,
    env: str | None = None,
    choices: typing.Sequence[Any] | None = None,
) -> Any:
    """Declare one setting: its default, its help text, and optional flag/env overrides."""
    return dataclasses.field(
        default=default,
        metadata={"help": help, "flag": flag, "env": env, "choices": tuple(choices) if choices else None},
    )


def flag_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def env_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("env") or ENV_PREFIX + f.name.upper()


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Strip ``X | None`` to ``(X, True)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(key: str, raw: Any, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if raw is None or (optional and isinstance(raw, str) and raw == ""):
        if optional:
            return None
        raise ConfigError(key, "a value is required")
    try:
        if base is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if base is Path:
            return Path(os.path.expanduser(str(raw)))
        if base in (int, float, str):
            if base is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError(f"not an integer: {raw!r}")
            return base(raw)
        if typing.get_origin(base) is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(i).strip() for i in items if str(i).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(key, f"cannot read {raw!r} as {getattr(base, '__name__', base)}: {exc}") from exc
    return raw


def add_options(parser: argparse.ArgumentParser, *classes: type) -> None:
    """Add every option of ``classes`` as a flag; a name shared by two classes is added once."""
    seen: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in _fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            base, _ = _base_type(hints[f.name])
            kwargs: dict[str, Any] = {
                "dest": f.name,
                "default": argparse.SUPPRESS,
                "help": f"{f.metadata['help']} (env {env_name(f)}; default {f.default!r})",
            }
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
            if base is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            parser.add_argument(flag_name(f), **kwargs)


def read_file(path: Path | None) -> dict[str, Any]:
    """Read a TOML settings file; a missing or malformed file is a ConfigError."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError("config", f"file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from exc


def build(
    cls: type[T],
    *,
    cli: argparse.Namespace | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | Path | None = None,
    **overrides: Any,
) -> T:
    """Build ``cls`` from CLI > env > file > default; ``overrides`` beat everything (for tests)."""
    cli_map = vars(cli) if isinstance(cli, argparse.Namespace) else dict(cli or {})
    env_map = os.environ if env is None else env
    file_map = read_file(file) if isinstance(file, Path) or file is None else dict(file)
    section = getattr(cls, "SECTION", None)
    if section and isinstance(file_map.get(section), dict):
        file_map = {**file_map, **file_map[section]}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in _fields(cls):
        raw = overrides.get(f.name, _MISSING)
        if raw is _MISSING:
            raw = cli_map.get(f.name, _MISSING)
        if raw is _MISSING and env_name(f) in env_map:
            raw = env_map[env_name(f)]
        if raw is _MISSING:
            raw = file_map.get(f.name, _MISSING)
        if raw is _MISSING:
            continue
        value = _convert(f.name, raw, hints[f.name])
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f.name, f"{value!r} is not one of {', '.join(map(str, choices))}")
        values[f.name] = value
    return cls(**values)


def positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    """Validation helper for ``__post_init__``: reject negative (or zero) numbers."""
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


# --- the system under test ---------------------------------------------------------------------

DEFAULT_DATA_DIR = Path("/tmp/hif/data")
DEFAULT_CHAOS_PATH = Path("/tmp/hif/chaos.json")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """Where jobs, trace state and graphs live. Empty URLs mean the embedded backends."""

    SECTION: typing.ClassVar[str] = "store"

    data_dir: Path = option(DEFAULT_DATA_DIR, help="folder for the embedded SQLite store and blobs")
    queue: str = option(
        "", help="job queue URL: sqlite:///path.db or redis://host:port/db (default: SQLite in data-dir)"
    )
    state: str = option(
        "", help="trace-state URL: sqlite:///path.db or redis://... (default: SQLite in data-dir)"
    )
    blobs: str = option(
        "", help="blob store: a folder path, file:///path or s3://bucket/prefix (default: data-dir/blobs)"
    )
    s3_endpoint_url: str | None = option(None, help="endpoint for S3-compatible stores (moto, MinIO)")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "hif.db"

    def queue_url(self) -> str:
        return self.queue or f"sqlite:///{self.sqlite_path}"

    def state_url(self) -> str:
        return self.state or f"sqlite:///{self.sqlite_path}"

    def blobs_url(self) -> str:
        return self.blobs or f"file://{self.data_dir / 'blobs'}"


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


def chaos_control_path(env: Mapping[str, str] | None = None) -> Path:
    """``CHAOS_CONTROL_PATH`` or ``/tmp/hif/chaos.json``: read by the explainer, written by the injector."""
    env = os.environ if env is None else env
    return Path(env.get("CHAOS_CONTROL_PATH") or DEFAULT_CHAOS_PATH)


# --- the gateway and the upstream simulator (engineer H1) ---------------------------------------

SERVERS = ("uvicorn", "granian")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """The OpenAI-compatible gateway: listeners, RBAC keys, the upstream and the enqueue buffer."""

    SECTION: typing.ClassVar[str] = "gateway"

    host: str = option("127.0.0.1", help="address the gateway listens on")
    port: int = option(8080, help="gateway HTTP port")
    metrics_port: int = option(9091, help="Prometheus /metrics port (0 disables)")
    keys: Path | None = option(None, help="RBAC keys file (TOML); without it the gateway runs open")
    upstream: str = option("sim", help="`sim` (the built-in simulator) or an OpenAI-compatible base URL")
    upstream_api_key: str | None = option(None, help="bearer key sent to a URL upstream")
    upstream_timeout_s: float = option(30.0, help="total time allowed for one upstream call")
    upstream_connect_timeout_s: float = option(5.0, help="time allowed to open an upstream connection")
    upstream_max_connections: int = option(512, help="pooled keep-alive connections to a URL upstream")
    max_body_bytes: int = option(1 << 20, help="largest accepted request body")
    server: str = option("uvicorn", help="HTTP server stack", choices=SERVERS)
    enqueue_buffer_jobs: int = option(10_000, help="explanation jobs held in memory before shedding")
    enqueue_batch_jobs: int = option(256, help="largest batch the enqueue writer sends to the stores")
    backpressure_refresh_s: float = option(0.25, help="how often the backpressure signal is re-read")
    backpressure_stale_s: float = option(5.0, help="a backpressure signal older than this counts as none")
    shutdown_timeout_s: float = option(30.0, help="time allowed to finish in-flight chats and flush jobs")
    max_tenant_labels: int = option(20, help="distinct tenant metric labels before `other`")
    log_level: str = option("info", help="log level", choices=("debug", "info", "warning", "error"))
    require_explainer: bool = option(
        False, help="/readyz also waits for a fresh explainer heartbeat (set by `hif serve`)"
    )

    def __post_init__(self) -> None:
        for key in ("port", "metrics_port"):
            value = getattr(self, key)
            if not 0 <= value <= 65535:
                raise ConfigError(key, f"must be a port number 0..65535, got {value!r}")
        positive("upstream_timeout_s", self.upstream_timeout_s)
        positive("upstream_connect_timeout_s", self.upstream_connect_timeout_s)
        positive("upstream_max_connections", self.upstream_max_connections)
        positive("max_body_bytes", self.max_body_bytes)
        positive("enqueue_buffer_jobs", self.enqueue_buffer_jobs)
        positive("enqueue_batch_jobs", self.enqueue_batch_jobs)
        positive("backpressure_refresh_s", self.backpressure_refresh_s)
        positive("backpressure_stale_s", self.backpressure_stale_s)
        positive("shutdown_timeout_s", self.shutdown_timeout_s)
        if self.upstream != "sim" and not self.upstream.startswith(("http://", "https://")):
            raise ConfigError("upstream", f"must be `sim` or an http(s):// base URL, got {self.upstream!r}")

    def __repr__(self) -> str:  # settings get logged: never print the upstream's key
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.upstream_api_key:
            values["upstream_api_key"] = "***"
        return "GatewaySettings(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"


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

    def __post_init__(self) -> None:
        positive("sim_ttft_ms", self.sim_ttft_ms, allow_zero=True)
        positive("sim_ttft_jitter", self.sim_ttft_jitter, allow_zero=True)
        positive("sim_tokens_per_s", self.sim_tokens_per_s, allow_zero=True)
        positive("sim_tokens_per_s_jitter", self.sim_tokens_per_s_jitter, allow_zero=True)
        positive("sim_completion_tokens", self.sim_completion_tokens)
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


# --- the explainer workers and their supervisor (engineer H2) -----------------------------------

DEVICES = ("auto", "cpu", "cuda")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplainerSettings:
    """``hif explainer``: worker processes, leases, batching, retries, backpressure thresholds."""

    SECTION: typing.ClassVar[str] = "explainer"

    workers: int = option(1, help="explainer worker processes")
    explainer_metrics_port: int = option(
        9090, help="Prometheus /metrics port for all workers (0 disables)"
    )
    explainer_host: str = option(
        "127.0.0.1", help="address the explainer metrics server listens on"
    )
    device: str = option("auto", help="torch device for the pipeline", choices=DEVICES)
    torch_threads: int = option(0, help="torch intra-op threads per worker (0: (cores - 1) / workers)")
    visibility_timeout_s: float = option(
        30.0, help="lease time before a silent worker's job is handed out again"
    )
    batch_max_tokens: int = option(2048, help="most (estimated) tokens in one extract forward pass")
    lease_max_jobs: int = option(8, help="most jobs one worker leases at a time")
    max_attempts: int = option(
        3, help="deliveries before a job that keeps killing workers is failed"
    )
    persist_retries: int = option(3, help="blob-write retries before the trace is failed")
    persist_backoff_s: float = option(0.05, help="first persist retry delay (doubles each retry)")
    tick_s: float = option(
        0.25, help="how often the supervisor sweeps expiries and updates backpressure"
    )
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
    recover_hold_s: float = option(
        1.0, help="how long pressure must stay low before the level drops"
    )
    pipeline_loader: str = option(
        "hif.explainer.pipeline:load_pipeline", help="module:function that loads a featureset's pipeline"
    )
    log_level: str = option("info", help="log level", choices=("debug", "info", "warning", "error"))

    def __post_init__(self) -> None:
        positive("workers", self.workers)
        if not 0 <= self.explainer_metrics_port <= 65535:
            port = self.explainer_metrics_port
            raise ConfigError("explainer_metrics_port", f"must be a port number 0..65535, got {port!r}")
        positive("torch_threads", self.torch_threads, allow_zero=True)
        positive("visibility_timeout_s", self.visibility_timeout_s)
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
