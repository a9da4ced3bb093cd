"""The soak orchestrator: hours of rotating load segments, in-process, with a checkpoint per segment.

Each segment is one :func:`hif.harness.run_load` call on this process's event loop (no
subprocess per segment), appending to the same result files with ``run_id = soak-NNNN``. After
each segment the orchestrator reads both /metrics endpoints, adds a point to the time series and
rewrites ``soak_summary.json`` atomically: that file is also the checkpoint ``--resume`` continues
from (the result files are cut back to their sizes at the last finished segment, so a segment cut
short by SIGINT or a crash is run again from its start, never counted twice).

>>> settings = SoakSettings(base_url="http://127.0.0.1:8080", hours=0.01,        # doctest: +SKIP
...                         segment_minutes=0.1, concurrency_scale=0.01)
>>> summary = run_soak_sync(settings)                                          # doctest: +SKIP
>>> summary["drift"]["overall"], len(summary["segments"])                      # doctest: +SKIP

``soak_summary.json`` (schema ``hif.soak.v2``) holds ``plan`` (profile, hours, segment length,
scale), ``slo`` (the thresholds), ``segments`` (one object per finished segment: its plan, ``chat``,
``explanations``, ``health`` of gateway and explainer, ``slo_breaches``, and ``buckets``: the
load runner's finer time buckets with their own ``slo_breaches``), ``series`` (parallel arrays,
one value per segment, for charts), ``drift`` (slope per hour, r^2 and verdict per series, an
overall verdict and findings), ``status`` (running | interrupted | finished) and ``checkpoint``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hif.config import option, same_option
from hif.errors import ConfigError
from hif.harness.load.preflight import check_run
from hif.harness.load.results import clear_stale
from hif.harness.load.run import run_load
from hif.harness.load.settings import (
    DEFAULT_RESULTS_DIR,
    RUNBOOK_SLOS,
    LoadSettings,
    metrics_urls,
    parse_slos,
)
from hif.harness.load.summary import LoadSummary
from hif.harness.records import SOAK_SCHEMA
from hif.harness.soak import checkpoint
from hif.harness.soak.drift import analyse
from hif.harness.soak.health import Fetch, fetch_text, scrape
from hif.harness.soak.plan import PROFILES, Schedule, SegmentPlan
from hif.harness.soak.point import SERIES, segment_point, series_of

log = logging.getLogger(__name__)

# The runbook's SLOs (section 5), in the load runner's gate names; --slo NAME=VALUE overrides.
DEFAULT_SLOS = dict(RUNBOOK_SLOS)

LoadFn = Callable[..., Awaitable[LoadSummary]]
CheckFn = Callable[[LoadSettings], Awaitable[dict[str, Any] | None]]  # the load runner's check_run


@dataclasses.dataclass(frozen=True, kw_only=True)
class SoakSettings:
    """One soak. Every ``option`` is a CLI flag (``--hours``), ``HIF_*`` env var and file key."""

    SECTION: typing.ClassVar[str] = "soak"

    base_url: str = same_option(LoadSettings, "base_url")
    hours: float = option(2.0, help="soak length in hours (fractions allowed: 0.02 = 72 s)")
    profile: str = option("default", help="load profile", choices=tuple(PROFILES))
    segment_minutes: float = option(10.0, help="segment length in minutes (fractions allowed)")
    spike_minutes: float | None = option(None, help="spiky: minutes per high/low phase (default: a segment)")
    concurrency_scale: float = option(1.0, help="scale the profile's concurrency and rate limits")
    # Options the soak passes on to every segment's load run: defined once, by the load runner.
    features: str | None = same_option(LoadSettings, "features")
    timeout_seconds: float = same_option(LoadSettings, "timeout_seconds")
    auth_token: str | None = same_option(LoadSettings, "auth_token")
    tenant_id: str | None = same_option(LoadSettings, "tenant_id")
    results_dir: Path = option(DEFAULT_RESULTS_DIR, help="where result files and soak_summary.json go")
    metrics_url_gateway: str | None = option(None, help="gateway /metrics (default: base-url host, :9091)")
    metrics_url_explainer: str | None = option(None, help="explainer /metrics (default: base-url host :9090)")
    resume: bool = option(False, help="continue the soak in results-dir from its last finished segment")
    processes: int = option(1, help="spread each segment's workers over N processes")
    drain_seconds: float = option(30.0, help="after each segment, time allowed for open polls to finish")
    poll_deadline_seconds: float = option(75.0, help="give up polling a trace this long after its chat")
    live: str = option(
        "off",
        help="each segment's live view: auto, rich, plain, off",
        choices=("auto", "rich", "plain", "off"),
    )
    stream: bool = option(False, help="stream every segment's chats (SSE): TTFT, ITL and TPOT too")
    slo: tuple[str, ...] = ()  # NAME=VALUE overrides of DEFAULT_SLOS; repeatable on the CLI

    def __post_init__(self) -> None:
        if not self.base_url.startswith("http://"):
            raise ConfigError("base_url", f"must be an http:// URL, got {self.base_url!r}")
        parse_slos(self.slo)
        self.schedule()  # validates hours, segment_minutes, scale

    def schedule(self) -> Schedule:
        return Schedule(
            profile=PROFILES[self.profile],
            hours=self.hours,
            segment_minutes=self.segment_minutes,
            concurrency_scale=self.concurrency_scale,
            spike_minutes=self.spike_minutes,
        )

    @property
    def slos(self) -> dict[str, float]:
        return {**DEFAULT_SLOS, **parse_slos(self.slo)}

    def metrics_urls(self) -> dict[str, str]:
        return metrics_urls(self.base_url, self.metrics_url_gateway, self.metrics_url_explainer)

    def load_settings(
        self, plan: SegmentPlan, *, append: bool, bucket_s: float, features: str | None = None
    ) -> LoadSettings:
        return LoadSettings(
            base_url=self.base_url,
            concurrency=plan.concurrency,
            duration_seconds=plan.duration_s,
            attach_rate=plan.attach_rate,
            granularity=plan.granularity,
            features=features or self.features,
            timeout_seconds=self.timeout_seconds,
            auth_token=self.auth_token,
            tenant_id=self.tenant_id,
            rps_limit=plan.rps_limit,
            results_dir=self.results_dir,
            processes=self.processes,
            drain_seconds=self.drain_seconds,
            poll_deadline_seconds=self.poll_deadline_seconds,
            bucket_seconds=bucket_s,
            live=self.live,
            append=append,
            run_id=f"soak-{plan.number:04d}",
            seed=plan.index,
            metrics_url_gateway=self.metrics_url_gateway,
            metrics_url_explainer=self.metrics_url_explainer,
            keep_files=(checkpoint.SOAK_SUMMARY_FILE,),
            stream=self.stream,
        )


def describe_plan(plan: SegmentPlan) -> str:
    return (
        f"{plan.concurrency} workers, attach {plan.attach_rate:g} ({plan.granularity}), "
        f"{plan.duration_s:g} s" + (f", {plan.rps_limit:g} req/s cap" if plan.rps_limit else "")
    )


def _fmt_ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.0f} ms"


def describe_result(point: dict[str, Any]) -> str:
    """One segment's results as a person reads them (the progress line after each segment)."""
    chat, expl = point["chat"], point["explanations"]
    err = chat.get("error_rate")
    ef = expl.get("expired_failed_rate")
    breaches = ", ".join(point.get("slo_breaches") or []) or "none"
    return (
        f"{chat.get('requests', 0)} chats at {chat.get('rps') or 0:.0f} req/s, "
        f"chat p95 {_fmt_ms(chat.get('p95_ms'))}, "
        f"errors {0.0 if err is None else err:.2%}; {expl.get('traces', 0)} explanations, sentence p95 "
        f"{_fmt_ms(expl.get('sentence_p95_ms'))}, token p95 {_fmt_ms(expl.get('token_p95_ms'))}, "
        f"expired+failed {0.0 if ef is None else ef:.2%}; SLO breaches: {breaches}"
    )


def bucket_seconds(segment_s: float) -> float:
    """Finer buckets inside a segment: one minute for real segments, five per compressed one."""
    return max(0.5, min(60.0, segment_s / 5.0))


class Soak:
    """One soak's state: the plan, the finished segments, and the summary file they live in."""

    def __init__(
        self,
        settings: SoakSettings,
        *,
        load: LoadFn = run_load,
        fetch: Fetch = fetch_text,
        clock: Callable[[], float] = time.time,
        check: CheckFn = check_run,
    ) -> None:
        self.settings, self.load, self.fetch, self.clock = settings, load, fetch, clock
        self.check = check
        self.path = settings.results_dir / checkpoint.SOAK_SUMMARY_FILE
        self.featureset: dict[str, Any] | None = None  # set by preflight()
        self.summary = self._start_or_resume()
        self.schedule = Schedule(
            profile=PROFILES[self.summary["plan"]["profile"]],
            **{k: self.summary["plan"][k] for k in checkpoint.PLAN_KEYS},
        )

    def _start_or_resume(self) -> dict[str, Any]:
        s = self.settings
        if s.resume:
            summary = checkpoint.load(self.path)
            checkpoint.rewind(s.results_dir, summary)
            wanted = s.schedule().to_json()
            if summary["plan"] != wanted:
                log.warning(
                    "resuming with the checkpoint's plan %s (flags asked for %s)", summary["plan"], wanted
                )
            summary["resumes"] = int(summary.get("resumes", 0)) + 1
            return summary
        return {
            "v": SOAK_SCHEMA,
            "status": "running",
            "started_at": self.clock(),
            "updated_at": self.clock(),
            "base_url": s.base_url,
            "features": s.features,
            "tenant_id": s.tenant_id,
            "plan": s.schedule().to_json(),
            "slo": s.slos,
            "metrics_urls": s.metrics_urls(),
            "baseline_health": None,
            "segments": [],
            "series": {},
            "drift": {},
            "resumes": 0,
            "checkpoint": checkpoint.sizes(s.results_dir, fresh=True),
        }

    async def preflight(self) -> None:
        """Check the target (and choose the featureset) once, before soak_summary.json is written:
        a soak that cannot start leaves no summary behind."""
        plans = self.pending()
        if not plans:
            return
        attach = max(p.attach_rate for p in plans)
        first = self.settings.load_settings(plans[0], append=True, bucket_s=1.0)
        self.featureset = await self.check(dataclasses.replace(first, attach_rate=attach))

    def pending(self) -> list[SegmentPlan]:
        done = len(self.summary["segments"])
        return self.schedule.segments()[done:]

    def _health(self) -> dict[str, Any]:
        return scrape(self.summary["metrics_urls"], self.fetch)

    def save(self, status: str) -> None:
        self.summary["status"] = status
        self.summary["updated_at"] = self.clock()
        segments = self.summary["segments"]
        t0 = float(segments[0]["started_at"]) if segments else float(self.summary["started_at"])
        self.summary["series"] = series_of(segments, t0)
        self.summary["drift"] = analyse(
            self.summary["series"]["t_h"], {k: self.summary["series"][k] for k in SERIES}
        )
        checkpoint.write(self.path, self.summary)

    async def run_segment(self, plan: SegmentPlan, stop: asyncio.Event) -> bool:
        """One segment; True when it ran to its end (and was recorded), False when stopped."""
        fresh = not self.summary["segments"] and not self.summary["resumes"]
        bucket_s = bucket_seconds(self.schedule.segment_s)
        used = self.featureset["used"] if self.featureset else None
        load_settings = self.settings.load_settings(plan, append=not fresh, bucket_s=bucket_s, features=used)
        log.info("soak segment %d/%d starts: %s", plan.number, self.schedule.count(), describe_plan(plan))
        result = await self.load(load_settings, stop=stop)
        if stop.is_set():
            return False
        health = await asyncio.to_thread(self._health)
        point = segment_point(plan, result.data, health, self.summary["slo"])
        log.info("soak segment %d/%d done: %s", plan.number, self.schedule.count(), describe_result(point))
        self.summary["segments"].append(point)
        self.summary["checkpoint"] = checkpoint.sizes(self.settings.results_dir)
        self.save("running")
        return True

    async def run(self, stop: asyncio.Event | None = None) -> dict[str, Any]:
        stop = stop or asyncio.Event()
        await self.preflight()
        if self.featureset:
            self.summary["featureset"] = self.featureset
        if not self.settings.resume:
            clear_stale(self.settings.results_dir)
        if self.summary["baseline_health"] is None:
            self.summary["baseline_health"] = await asyncio.to_thread(self._health)
        self.save("running")
        for plan in self.pending():
            if stop.is_set() or not await self.run_segment(plan, stop):
                self.save("interrupted")
                return self.summary
        self.save("finished")
        return self.summary


async def run_soak(
    settings: SoakSettings,
    *,
    stop: asyncio.Event | None = None,
    load: LoadFn = run_load,
    fetch: Fetch = fetch_text,
    check: CheckFn = check_run,
) -> dict[str, Any]:
    """Run (or ``--resume``) a soak until its last segment or ``stop``; returns soak_summary.json's data.

    A segment that raises (the target vanished, pre-flight failed) leaves the checkpoint at the
    last finished segment, marks the soak ``interrupted`` and re-raises.
    """
    soak = Soak(settings, load=load, fetch=fetch, check=check)
    try:
        return await soak.run(stop)
    except (Exception, asyncio.CancelledError):
        if soak.path.exists():  # a soak that failed its pre-flight has no summary to mark
            soak.save("interrupted")
        raise


def run_soak_sync(settings: SoakSettings, *, stop: asyncio.Event | None = None) -> dict[str, Any]:
    """:func:`run_soak` on a fresh (uvloop when available) event loop."""
    from hif.harness.client import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(run_soak(settings, stop=stop))
    finally:
        loop.close()


__all__ = ["DEFAULT_SLOS", "PROFILES", "Schedule", "SoakSettings", "run_soak", "run_soak_sync"]
