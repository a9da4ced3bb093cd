"""The explainer worker: lease jobs, run extract -> decode -> attribution -> persist, finish traces.

One :class:`Worker` runs in one process (``hif explainer`` starts several; the gateway never runs
one in its event loop). Each accepted job ends ``complete``, ``failed`` or ``expired``:

- a trace already terminal (swept, or finished by a crashed worker's twin) is acked unrun;
- a job past its TTL, or at HARD backpressure one that can no longer meet its budget, expires;
- any stage error fails the trace with the stage named; a persist error is retried with backoff
  first; a job that keeps killing its workers fails after ``max_attempts`` deliveries;
- leases are extended while work runs (a heartbeat thread), so only a dead worker's job is
  handed out again, and the trace transitions are compare-and-set, so a late twin is harmless.

Chaos hooks (read through :class:`~hif.chaos.ChaosReader`, never able to crash the worker):
``slow-sae`` sleeps before decode, ``fail-attribution`` raises in attribution (fallback to the
heuristic, or fail the trace), ``drop-s3`` fails a blob write (retried like a real one).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from hif.chaos import DROP_S3, FAIL_ATTRIBUTION, SLOW_SAE, ChaosReader, Fault
from hif.errors import AttributionError, BlobWriteError, HifError, JobExpiredError
from hif.explainer._events import MetricsSink
from hif.explainer.backpressure import LEVEL_NAMES, Thresholds, apply_ladder, cannot_meet_budget
from hif.explainer.plan import EXPIRE_EARLY, GRADIENT, HEURISTIC, Pipeline, Plan
from hif.explainer.settings import ExplainerSettings, SlaSettings
from hif.store.base import (
    PENDING_STATES,
    BackpressureLevel,
    BlobStore,
    Job,
    JobQueue,
    Lease,
    TraceState,
    TraceStore,
    graph_key,
)

log = logging.getLogger(__name__)

SIGNAL_STALE_S = 5.0  # a backpressure signal older than this (supervisor gone) counts as none
ATTRIBUTION_FALLBACK = "attribution-fallback"  # recorded in `degraded` when gradient attribution failed
COST_EWMA_ALPHA = 0.2


def estimate_tokens(job: Job) -> int:
    """A tokenizer-free estimate (about 4 characters a token) used only to size extract batches."""
    return (len(job.prompt) + len(job.completion)) // 4 + 2


@dataclasses.dataclass(slots=True)
class _Task:
    lease: Lease
    plan: Plan
    pipeline: Pipeline
    level: str
    started: float = dataclasses.field(default_factory=time.monotonic)
    stage_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    degraded: tuple[str, ...] = ()
    attribution: str | None = None

    @property
    def job(self) -> Job:
        return self.lease.job


class _JobFailedError(Exception):
    """Internal: end this job as failed with the given message."""


class _ReleasedError(Exception):
    """Internal: shutting down mid-job; hand the job back to the queue instead of finishing it."""


class Worker:
    """One consumer of the job queue. ``run(stop)`` loops; ``run_once()`` handles one lease batch."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        state: TraceStore,
        blobs: BlobStore,
        pipelines: Callable[[str], Pipeline],
        settings: ExplainerSettings,
        sla: SlaSettings,
        sink: MetricsSink,
        consumer: str,
        chaos: ChaosReader | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.queue, self.state, self.blobs = queue, state, blobs
        self.pipelines = pipelines
        self.settings, self.sla = settings, sla
        self.sink, self.consumer, self.chaos = sink, consumer, chaos
        self.rng = rng or random.Random()
        self.thresholds = Thresholds.from_settings(settings, sla)
        self._held: dict[str, Lease] = {}
        self._held_lock = threading.Lock()
        self._cost_s: dict[str, float] = {}
        self._stop = threading.Event()  # replaced by run()'s; interrupts injected delays

    # --- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, block_s: float = 0.5) -> None:
        """Work until ``stop`` is set; jobs leased but not started are released, not dropped."""
        self._stop = stop
        beat = threading.Thread(
            target=self._heartbeat_loop, args=(stop,), name="lease-heartbeat", daemon=True
        )
        beat.start()
        while not stop.is_set():
            try:
                self.run_once(block_s=block_s, stop=stop)
            except HifError as exc:  # store briefly unavailable: back off, never die
                log.warning("worker %s: %s; retrying", self.consumer, exc)
                # The jobs of that batch were left unfinished: stop extending their leases so they
                # are re-delivered after the visibility timeout instead of held until their TTL.
                with self._held_lock:
                    self._held.clear()
                stop.wait(1.0)
        beat.join(timeout=2.0)

    def run_once(self, *, block_s: float = 0.0, stop: threading.Event | None = None) -> int:
        """Lease up to ``lease_max_jobs`` jobs and take each to a terminal state; returns how many."""
        leases = self.queue.lease(
            self.consumer,
            max_jobs=self.settings.lease_max_jobs,
            visibility_timeout_s=self.settings.visibility_timeout_s,
            block_s=block_s,
        )
        if not leases:
            return 0
        for lease in leases:
            self._hold(lease)
        level, pressure = self._pressure()
        tasks = [t for t in (self._admit(lease, level, pressure) for lease in leases) if t is not None]
        if stop is not None:
            self._stop = stop
        for batch in self._batches(tasks):
            self._run_batch(batch, self._stop)
        return len(leases)

    # --- admission: skip, expire, plan ---------------------------------------------------------

    def _pressure(self) -> tuple[BackpressureLevel, float]:
        signal = self.state.read_backpressure()
        level = BackpressureLevel.NONE
        if signal is not None and not signal.stale(time.time(), SIGNAL_STALE_S):
            level = signal.level
        return level, self.thresholds.pressure(self.queue.oldest_age_s(), self.queue.depth())

    def _admit(self, lease: Lease, level: BackpressureLevel, pressure: float) -> _Task | None:
        job, now = lease.job, time.time()
        record = self.state.get(job.trace_id)
        if record is None or record.state.terminal:
            self._ack(lease)  # swept, finished by a twin, or never recorded: nothing to do
            return None
        if now >= job.expires_at:
            self._end(lease, TraceState.EXPIRED, reason="ttl: expired before work started")
            return None
        if lease.attempt > self.settings.max_attempts:
            self._end(lease, TraceState.FAILED, error=f"gave up after {lease.attempt - 1} deliveries")
            return None
        try:
            pipeline = self.pipelines(job.featureset)
            plan = apply_ladder(pipeline.default_plan(job.granularity), level, pressure)
        except HifError as exc:
            self._end(lease, TraceState.FAILED, error=f"featureset: {exc}")
            return None
        level_name = LEVEL_NAMES[level]
        if level == BackpressureLevel.HARD and cannot_meet_budget(
            now - job.created_at, self._cost_s.get(plan.granularity, 0.0), job.budget_s
        ):
            self._action(EXPIRE_EARLY, level_name)
            self._end(
                lease,
                TraceState.EXPIRED,
                reason="expire-early: cannot meet its budget at hard backpressure",
                degraded=(*plan.degraded, EXPIRE_EARLY),
            )
            return None
        for rung in plan.degraded:
            self._action(rung, level_name)
        running = self.state.transition(
            job.trace_id,
            from_states=PENDING_STATES,
            to_state=TraceState.RUNNING,
            attempts=lease.attempt,
            granularity=plan.granularity,
            degraded=plan.degraded,
            features_resolved=pipeline.featureset.name,
        )
        if running is None:
            self._ack(lease)
            return None
        return _Task(lease=lease, plan=plan, pipeline=pipeline, level=level_name, degraded=plan.degraded)

    def _batches(self, tasks: Sequence[_Task]) -> Iterator[list[_Task]]:
        """Group by pipeline, then cut into forward passes of at most ``batch_max_tokens``."""
        by_pipeline: dict[int, list[_Task]] = {}
        for task in tasks:
            by_pipeline.setdefault(id(task.pipeline), []).append(task)
        for group in by_pipeline.values():
            batch: list[_Task] = []
            tokens = 0
            for task in group:
                size = estimate_tokens(task.job)
                if batch and tokens + size > self.settings.batch_max_tokens:
                    yield batch
                    batch, tokens = [], 0
                batch.append(task)
                tokens += size
            if batch:
                yield batch

    # --- stages --------------------------------------------------------------------------------

    def _run_batch(self, batch: list[_Task], stop: threading.Event) -> None:
        if stop.is_set():
            self._release(batch)
            return
        pipeline = batch[0].pipeline
        started = time.perf_counter()
        try:
            extractions = pipeline.extract([t.job for t in batch], [t.plan for t in batch])
        except Exception as exc:
            log.exception("extract failed for %d jobs", len(batch))
            for task in batch:
                self._finish_failed(task, f"extract: {type(exc).__name__}: {exc}")
            return
        elapsed = time.perf_counter() - started
        self.sink.record("stage_duration", "observe", elapsed, stage="extract")
        for i, (task, extraction) in enumerate(zip(batch, extractions, strict=True)):
            if stop.is_set():  # shutting down: finish the job in hand, hand the rest back
                self._release(batch[i:])
                return
            task.stage_ms["extract"] = round(elapsed * 1000, 3)
            self._run_task(task, extraction)

    def _run_task(self, task: _Task, extraction: Any) -> None:
        try:
            decoded = self._timed(task, "decode", self._decode, task, extraction)
            attributed = self._timed(task, "attribution", self._attribute, task, decoded)
            graph = task.pipeline.graph(task.job, decoded, attributed, task.plan)
            self._check_deadline(task)
            self._timed(task, "persist", self._persist, task, graph)
        except _ReleasedError:
            self._release([task])
        except JobExpiredError as exc:
            self._finish(task, TraceState.EXPIRED, reason=str(exc))
        except BlobWriteError as exc:
            self._finish_failed(task, f"persist: {exc}")
        except _JobFailedError as exc:
            self._finish_failed(task, str(exc))
        except Exception as exc:
            log.exception("job %s failed", task.job.trace_id)
            self._finish_failed(task, f"{type(exc).__name__}: {exc}")
        else:
            self._finish(task, TraceState.COMPLETE, graph_key=graph_key(task.job.trace_id))

    def _timed(self, task: _Task, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        self._check_deadline(task)
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            elapsed = time.perf_counter() - started
            task.stage_ms[stage] = round(elapsed * 1000, 3)
            self.sink.record("stage_duration", "observe", elapsed, stage=stage)

    def _decode(self, task: _Task, extraction: Any) -> Any:
        fault = self._fault(SLOW_SAE)
        # Injected latency (chaos), not a stand-in for work: it is what slow-sae means. It is
        # interruptible, so a shutdown does not wait out a long injected delay.
        if fault is not None:
            delay_s = fault.jitter_ms / 1000 * self.rng.uniform(0.5, 1.5)
            # Never sleep past the job's TTL: the deadline check below then expires it promptly.
            if self._stop.wait(min(delay_s, max(0.0, task.job.expires_at - time.time()))):
                raise _ReleasedError()
            self._check_deadline(task)
        return task.pipeline.decode(extraction, task.plan)

    def _attribute(self, task: _Task, decoded: Any) -> Any:
        fault = self._fault(FAIL_ATTRIBUTION, count=False)
        if fault is not None and (fault.mode == "fail" or task.plan.attribution == GRADIENT):
            self.sink.record("chaos_injections", "inc", flag=FAIL_ATTRIBUTION)
            if fault.mode == "fail":
                raise _JobFailedError("attribution: chaos fail-attribution injected a failure")
        method = task.plan.attribution
        if method == GRADIENT:
            try:
                if fault is not None:
                    raise AttributionError("chaos fail-attribution injected a failure")
                result = task.pipeline.attribute(decoded, task.plan)
            except AttributionError as exc:
                log.info(
                    "job %s: gradient attribution failed (%s); heuristic fallback", task.job.trace_id, exc
                )
                task.degraded = (*task.degraded, ATTRIBUTION_FALLBACK)
                method, result = HEURISTIC, task.pipeline.heuristic(decoded, task.plan)
        else:
            result = task.pipeline.heuristic(decoded, task.plan)
        task.attribution = method
        self.sink.record("attribution_method", "inc", method=method)
        return result

    def _persist(self, task: _Task, graph: dict[str, Any]) -> None:
        key, data = graph_key(task.job.trace_id), orjson.dumps(graph)
        retries = self.settings.persist_retries
        for attempt in range(retries + 1):
            try:
                if self._fault(DROP_S3) is not None:
                    raise BlobWriteError("chaos drop-s3 injected a write failure", key=key)
                self.blobs.put(key, data)
                return
            except BlobWriteError as exc:
                if attempt == retries:
                    raise BlobWriteError(f"{exc.message} (gave up after {retries} retries)", key=key) from exc
                self.sink.record("persist_retries", "inc")
                time.sleep(self.settings.persist_backoff_s * 2**attempt)  # backoff between real retries

    def _check_deadline(self, task: _Task) -> None:
        if time.time() >= task.job.expires_at:
            raise JobExpiredError("ttl: expired while running", trace_id=task.job.trace_id)

    def _fault(self, flag: str, *, count: bool = True) -> Fault | None:
        """The fault for ``flag`` when it fires for this job (counted), else None."""
        if self.chaos is None:
            return None
        fault = self.chaos.active().get(flag)
        if fault is None or not fault.hits(self.rng):
            return None
        if count:
            self.sink.record("chaos_injections", "inc", flag=flag)
        return fault

    # --- endings -------------------------------------------------------------------------------

    def _finish(self, task: _Task, to_state: TraceState, **fields: Any) -> None:
        fields.update(stage_ms=task.stage_ms, degraded=task.degraded, attribution=task.attribution)
        done = self.state.transition(
            task.job.trace_id, from_states=[TraceState.RUNNING], to_state=to_state, **fields
        )
        if done is not None:
            self._count(task.job, to_state)
            if to_state == TraceState.COMPLETE:
                cost = time.monotonic() - task.started
                old = self._cost_s.get(task.plan.granularity, cost)
                self._cost_s[task.plan.granularity] = old + COST_EWMA_ALPHA * (cost - old)
        self._ack(task.lease)

    def _finish_failed(self, task: _Task, error: str) -> None:
        self._finish(task, TraceState.FAILED, error=error)

    def _end(self, lease: Lease, to_state: TraceState, **fields: Any) -> None:
        """End a job that never started running (expired, or failed at admission)."""
        if self.state.transition(lease.job.trace_id, from_states=PENDING_STATES, to_state=to_state, **fields):
            self._count(lease.job, to_state)
        self._ack(lease)

    def _count(self, job: Job, to_state: TraceState) -> None:
        self.sink.record("jobs", "inc", state=str(to_state))
        self.sink.record(
            "job_duration",
            "observe",
            max(0.0, time.time() - job.created_at),
            granularity=job.granularity,
            state=str(to_state),
        )

    def _action(self, rung: str, level: str) -> None:
        self.sink.record("backpressure_actions", "inc", action=rung, level=level)

    # --- leases --------------------------------------------------------------------------------

    def _hold(self, lease: Lease) -> None:
        with self._held_lock:
            self._held[lease.job.trace_id] = lease

    def _ack(self, lease: Lease) -> None:
        with self._held_lock:
            self._held.pop(lease.job.trace_id, None)
        self.queue.ack(lease)

    def _release(self, batch: Sequence[_Task]) -> None:
        """Hand unstarted jobs straight back (deadline now) instead of waiting out the lease."""
        for task in batch:
            with self._held_lock:
                self._held.pop(task.job.trace_id, None)
            self.queue.extend(task.lease, 0.0)

    def heartbeat(self) -> None:
        """Extend every held lease that is past half its visibility timeout."""
        vis = self.settings.visibility_timeout_s
        with self._held_lock:
            due = [le for le in self._held.values() if le.deadline - time.time() < vis / 2]
        for lease in due:
            extended = self.queue.extend(lease, vis)
            with self._held_lock:
                if lease.job.trace_id in self._held:
                    self._held[lease.job.trace_id] = extended

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        interval = max(0.05, self.settings.visibility_timeout_s / 4)
        while not stop.wait(interval):
            try:
                self.heartbeat()
            except HifError as exc:
                log.warning("lease heartbeat failed: %s", exc)
