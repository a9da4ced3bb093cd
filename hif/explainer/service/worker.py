"""The explainer's queue consumer: lease jobs, admit them, hand them to the handler, end their traces.

One :class:`Worker` runs in one process (``hif explainer`` starts several; the gateway never runs
one in its event loop). It owns the lease lifecycle; explaining a job is the
:class:`~hif.explainer.service.handler.Handler`'s part. Each accepted job ends ``complete``,
``failed`` or ``expired``:

- a trace already terminal (swept, or finished by a crashed worker's twin) is acked unrun;
- a job past its TTL, or at HARD backpressure one that can no longer meet its budget, expires;
- any stage error fails the trace with the stage named (the handler retries a persist error first);
  a job that keeps killing its workers fails after ``max_attempts`` deliveries;
- leases are extended while work runs (a heartbeat thread), so only a dead worker's job is
  handed out again, and the trace transitions are compare-and-set, so a late twin is harmless.

With a :class:`~hif.chaos.ChaosReader`, the handler's stages and blob store are wrapped by the chaos
faults of :mod:`hif.explainer.service.faults`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hif.chaos import ChaosReader
from hif.errors import HifError
from hif.explainer.plan import EXPIRE_EARLY, Pipeline, Plan
from hif.explainer.service.backpressure import LEVEL_NAMES, Thresholds
from hif.explainer.service.events import MetricsSink
from hif.explainer.service.faults import ChaosBlobStore, Faults
from hif.explainer.service.handler import STAGES, Ending, Handler, ReleasedError, Task
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
)

log = logging.getLogger(__name__)

SIGNAL_STALE_S = 5.0  # a backpressure signal older than this (supervisor gone) counts as none


def estimate_tokens(job: Job) -> int:
    """A tokenizer-free estimate (about 4 characters a token) used only to size extract batches."""
    return (len(job.prompt) + len(job.completion)) // 4 + 2


def _handler(
    blobs: BlobStore,
    pipelines: Callable[[str], Pipeline],
    settings: ExplainerSettings,
    sink: MetricsSink,
    chaos: ChaosReader | None,
    rng: random.Random,
) -> Handler:
    if chaos is None:
        return Handler(blobs=blobs, pipelines=pipelines, settings=settings, sink=sink)
    faults = Faults(chaos, rng, sink)
    stages = faults.wrap(STAGES)
    return Handler(
        blobs=ChaosBlobStore(blobs, faults), pipelines=pipelines, settings=settings, sink=sink, stages=stages
    )


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
        self.queue, self.state = queue, state
        self.settings, self.sink, self.consumer = settings, sink, consumer
        self.handler = _handler(blobs, pipelines, settings, sink, chaos, rng or random.Random())
        self.thresholds = Thresholds.from_settings(settings, sla)
        self._held: dict[str, Lease] = {}
        self._held_lock = threading.Lock()
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
        if stop is not None:
            self._stop = stop
        level, pressure = self._pressure()
        tasks = [t for t in (self._admit(lease, level, pressure) for lease in leases) if t is not None]
        for batch in self._batches(tasks):
            self._run_batch(batch)
        return len(leases)

    # --- admission: skip, expire, plan ---------------------------------------------------------

    def _pressure(self) -> tuple[BackpressureLevel, float]:
        signal = self.state.read_backpressure()
        level = BackpressureLevel.NONE
        if signal is not None and not signal.stale(time.time(), SIGNAL_STALE_S):
            level = signal.level
        return level, self.thresholds.pressure(self.queue.oldest_age_s(), self.queue.depth())

    def _admit(self, lease: Lease, level: BackpressureLevel, pressure: float) -> Task | None:
        if not self._runnable(lease):
            return None
        try:
            pipeline, plan = self.handler.plan(lease.job, level, pressure)
        except HifError as exc:
            self._end(lease, TraceState.FAILED, error=f"featureset: {exc}")
            return None
        level_name = LEVEL_NAMES[level]
        if level == BackpressureLevel.HARD and self.handler.cannot_meet_budget(lease.job, plan, time.time()):
            self._expire_early(lease, plan, level_name)
            return None
        for rung in plan.degraded:
            self._action(rung, level_name)
        return self._start(lease, pipeline, plan, level_name)

    def _runnable(self, lease: Lease) -> bool:
        """False when the job ended here: already terminal, past its TTL, or delivered too often."""
        job = lease.job
        record = self.state.get(job.trace_id)
        if record is None or record.state.terminal:
            self._ack(lease)  # swept, finished by a twin, or never recorded: nothing to do
        elif time.time() >= job.expires_at:
            self._end(lease, TraceState.EXPIRED, reason="ttl: expired before work started")
        elif lease.attempt > self.settings.max_attempts:
            self._end(lease, TraceState.FAILED, error=f"gave up after {lease.attempt - 1} deliveries")
        else:
            return True
        return False

    def _expire_early(self, lease: Lease, plan: Plan, level_name: str) -> None:
        self._action(EXPIRE_EARLY, level_name)
        self._end(
            lease,
            TraceState.EXPIRED,
            reason="expire-early: cannot meet its budget at hard backpressure",
            degraded=(*plan.degraded, EXPIRE_EARLY),
        )

    def _start(self, lease: Lease, pipeline: Pipeline, plan: Plan, level_name: str) -> Task | None:
        running = self.state.transition(
            lease.job.trace_id,
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
        return Task(
            lease=lease,
            plan=plan,
            pipeline=pipeline,
            level=level_name,
            stop=self._stop,
            degraded=plan.degraded,
        )

    def _batches(self, tasks: Sequence[Task]) -> Iterator[list[Task]]:
        """Group by pipeline, then cut into forward passes of at most ``batch_max_tokens``."""
        by_pipeline: dict[int, list[Task]] = {}
        for task in tasks:
            by_pipeline.setdefault(id(task.pipeline), []).append(task)
        for group in by_pipeline.values():
            yield from self._cut(group)

    def _cut(self, group: list[Task]) -> Iterator[list[Task]]:
        batch: list[Task] = []
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

    # --- running: the handler explains, the worker ends ----------------------------------------

    def _run_batch(self, batch: list[Task]) -> None:
        if self._stop.is_set():
            self._release(batch)
            return
        try:
            extractions = self.handler.extract(batch)
        except Exception as exc:
            log.exception("extract failed for %d jobs", len(batch))
            for task in batch:
                self._finish(task, Ending.failed(f"extract: {type(exc).__name__}: {exc}"))
            return
        if self.settings.attribution_batching == "on":
            for task, ending in zip(batch, self.handler.explain_batch(batch, extractions), strict=True):
                if ending is None:  # shutting down before it finished: hand it back
                    self._release([task])
                else:
                    self._finish(task, ending)
            return
        for i, (task, extraction) in enumerate(zip(batch, extractions, strict=True)):
            if self._stop.is_set():  # shutting down: finish the job in hand, hand the rest back
                self._release(batch[i:])
                return
            self._run_task(task, extraction)

    def _run_task(self, task: Task, extraction: Any) -> None:
        try:
            ending = self.handler.explain(task, extraction)
        except ReleasedError:
            self._release([task])
        else:
            self._finish(task, ending)

    # --- endings -------------------------------------------------------------------------------

    def _finish(self, task: Task, ending: Ending) -> None:
        fields = {**ending.fields, "stage_ms": task.stage_ms, "degraded": task.degraded}
        done = self.state.transition(
            task.job.trace_id,
            from_states=[TraceState.RUNNING],
            to_state=ending.state,
            attribution=task.attribution,
            **fields,
        )
        if done is not None:
            self._count(task.job, ending.state)
            if ending.state == TraceState.COMPLETE:
                self.handler.completed(task)
        self._ack(task.lease)

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

    def _release(self, batch: Sequence[Task]) -> None:
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
        # Two beats on one thread: "alive" every consumer_heartbeat_s (others release our leases
        # after SILENT_BEATS missed ones) and lease extensions (each due at half its timeout).
        interval = max(0.05, min(self.settings.consumer_heartbeat_s, self.settings.visibility_timeout_s / 4))
        while True:
            try:
                self.queue.heartbeat(self.consumer)
                self.heartbeat()
            except HifError as exc:
                log.warning("lease heartbeat failed: %s", exc)
            if stop.wait(interval):
                return
