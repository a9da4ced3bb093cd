"""Explain one job: plan (the degradation ladder), extract, decode, attribution, graph, persist.

The :class:`Handler` knows the stages and what degraded a job; it knows nothing of leases. The queue
consumer (:class:`~hif.explainer.service.worker.Worker`) admits jobs, hands them here and writes the
:class:`Ending` it gets back. Per-job stages are plain callables in :class:`Stages` and graphs go to a
:class:`~hif.store.base.BlobStore`, so chaos faults (:mod:`hif.explainer.service.faults`) wrap both
without the handler knowing::

    handler = Handler(blobs=blobs, pipelines=cache, settings=settings, sink=sink)
    pipeline, plan = handler.plan(job, level, pressure)
    extractions = handler.extract(tasks)            # one forward pass for the batch
    ending = handler.explain(task, extractions[0])  # Ending(COMPLETE, {"graph_key": ...})
    endings = handler.explain_batch(tasks, extractions)  # gradient attributions share passes

``explain_batch`` decodes every job, runs the gradient attributions of the batch in shared forward
and backward passes (``Pipeline.attribute_batch``), then finishes each job as ``explain`` does; the
attribution stage of each job picks up its share, so chaos faults and the heuristic fallback still
act per job. ``attribution_batching=off`` keeps one job's attribution at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from hif.errors import AttributionError, BlobWriteError, JobExpiredError
from hif.explainer import graphfile
from hif.explainer.plan import GRADIENT, HEURISTIC, Pipeline, Plan
from hif.explainer.service.backpressure import apply_ladder, cannot_meet_budget
from hif.explainer.service.events import MetricsSink
from hif.explainer.settings import ExplainerSettings
from hif.store.base import BackpressureLevel, BlobStore, Job, Lease, TraceState, graph_key

log = logging.getLogger(__name__)

ATTRIBUTION_FALLBACK = "attribution-fallback"  # recorded in `degraded` when gradient attribution failed
COST_EWMA_ALPHA = 0.2


@dataclasses.dataclass(slots=True)
class Task:
    """One admitted job in flight: its lease, plan and pipeline, and what happened to it so far."""

    lease: Lease
    plan: Plan
    pipeline: Pipeline
    level: str
    stop: threading.Event  # set when the worker shuts down; interrupts injected delays
    started: float = dataclasses.field(default_factory=time.monotonic)
    stage_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    degraded: tuple[str, ...] = ()
    attribution: str | None = None
    # This job's share of a batch's gradient attribution (or the AttributionError it met there).
    shared: Any = None

    @property
    def job(self) -> Job:
        return self.lease.job


class StageFailedError(Exception):
    """End this job as failed with this message (an expected failure: no traceback is logged)."""


class ReleasedError(Exception):
    """Shutting down mid-job: hand the job back to the queue instead of finishing it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Ending:
    """How a job ends: its terminal trace state and the fields written with it."""

    state: TraceState
    fields: dict[str, Any]

    @classmethod
    def failed(cls, error: str) -> Ending:
        return cls(TraceState.FAILED, {"error": error})


Stage = Callable[[Task, Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Stages:
    """The per-job stages after extract: ``decode(task, extraction)``, ``attribution(task, decoded)``.

    ``attribution`` sets ``task.attribution`` to the method it used."""

    decode: Stage
    attribution: Stage


def check_deadline(task: Task) -> None:
    if time.time() >= task.job.expires_at:
        raise JobExpiredError("ttl: expired while running", trace_id=task.job.trace_id)


def decode(task: Task, extraction: Any) -> Any:
    return task.pipeline.decode(extraction, task.plan)


def attribute(task: Task, decoded: Any) -> Any:
    """The plan's method; a gradient that cannot run falls back to the heuristic."""
    if task.plan.attribution != GRADIENT:
        task.attribution = HEURISTIC
        return task.pipeline.heuristic(decoded, task.plan)
    try:
        if isinstance(task.shared, AttributionError):
            raise task.shared
        result = task.shared if task.shared is not None else task.pipeline.attribute(decoded, task.plan)
    except AttributionError as exc:
        return fall_back(task, decoded, exc)
    task.attribution = GRADIENT
    return result


def fall_back(task: Task, decoded: Any, exc: AttributionError) -> Any:
    """Gradient attribution failed: record the rung and use the heuristic instead."""
    log.info("job %s: gradient attribution failed (%s); heuristic fallback", task.job.trace_id, exc)
    task.degraded = (*task.degraded, ATTRIBUTION_FALLBACK)
    result = task.pipeline.heuristic(decoded, task.plan)
    task.attribution = HEURISTIC
    return result


STAGES = Stages(decode=decode, attribution=attribute)


class Handler:
    """Runs admitted jobs through the pipeline's stages and persists their graphs."""

    def __init__(
        self,
        *,
        blobs: BlobStore,
        pipelines: Callable[[str], Pipeline],
        settings: ExplainerSettings,
        sink: MetricsSink,
        stages: Stages = STAGES,
    ) -> None:
        self.blobs, self.pipelines, self.stages = blobs, pipelines, stages
        self.settings, self.sink = settings, sink
        self._cost_s: dict[str, float] = {}  # granularity -> EWMA of a completed job's seconds

    # --- planning ------------------------------------------------------------------------------

    def plan(self, job: Job, level: BackpressureLevel, pressure: float) -> tuple[Pipeline, Plan]:
        """The job's pipeline and its plan after the ladder; HifError when the featureset is not served."""
        pipeline = self.pipelines(job.featureset)
        plan = apply_ladder(pipeline.default_plan(job.granularity), level, pressure)
        if self.settings.attribution_batching != "on":
            plan = dataclasses.replace(plan, batched=False)
        return pipeline, plan

    def cannot_meet_budget(self, job: Job, plan: Plan, now: float) -> bool:
        """Whether the job, at what such jobs have cost lately, would finish past its budget."""
        return cannot_meet_budget(now - job.created_at, self._cost_s.get(plan.granularity, 0.0), job.budget_s)

    def completed(self, task: Task) -> None:
        """Fold a completed job's cost into its granularity's running estimate."""
        cost = time.monotonic() - task.started
        old = self._cost_s.get(task.plan.granularity, cost)
        self._cost_s[task.plan.granularity] = old + COST_EWMA_ALPHA * (cost - old)

    # --- stages --------------------------------------------------------------------------------

    def extract(self, batch: Sequence[Task]) -> list[Any]:
        """One forward pass for a batch on one pipeline; its time counts for every job in it."""
        started = time.perf_counter()
        extractions = batch[0].pipeline.extract([t.job for t in batch], [t.plan for t in batch])
        elapsed = time.perf_counter() - started
        self.sink.record("stage_duration", "observe", elapsed, stage="extract")
        for task in batch:
            task.stage_ms["extract"] = round(elapsed * 1000, 3)
        return extractions

    def explain(self, task: Task, extraction: Any) -> Ending:
        """Decode, attribute, build and persist the graph. ReleasedError when stopped mid-job."""
        return self._guarded(task, self._run, task, extraction) or self._complete(task)

    def explain_batch(self, tasks: Sequence[Task], extractions: Sequence[Any]) -> list[Ending | None]:
        """``explain`` for a batch whose gradient attributions share passes; None: hand the job back
        (shutting down: the job in hand is finished, the rest are not started)."""
        endings: list[Ending | None] = [None] * len(tasks)
        decoded: dict[int, Any] = {}
        for i, (task, extraction) in enumerate(zip(tasks, extractions, strict=True)):
            if task.stop.is_set():
                return endings
            try:
                endings[i] = self._guarded(task, self._decode, task, extraction, decoded, i)
            except ReleasedError:
                return endings
        self._share_attribution([tasks[i] for i in decoded], list(decoded.values()))
        for i, value in decoded.items():
            if endings[i] is not None or tasks[i].stop.is_set():
                continue
            try:
                endings[i] = self._guarded(tasks[i], self._finish, tasks[i], value) or self._complete(
                    tasks[i]
                )
            except ReleasedError:
                return endings
        return endings

    def _guarded(self, task: Task, fn: Callable[..., None], *args: Any) -> Ending | None:
        """Run a part of the job; the Ending it came to when it failed, None when it went through."""
        try:
            fn(*args)
        except ReleasedError:
            raise
        except JobExpiredError as exc:
            return Ending(TraceState.EXPIRED, {"reason": str(exc)})
        except BlobWriteError as exc:
            return Ending.failed(f"persist: {exc}")
        except StageFailedError as exc:
            return Ending.failed(str(exc))
        except Exception as exc:
            log.exception("job %s failed", task.job.trace_id)
            return Ending.failed(f"{type(exc).__name__}: {exc}")
        return None

    @staticmethod
    def _complete(task: Task) -> Ending:
        return Ending(TraceState.COMPLETE, {"graph_key": graph_key(task.job.trace_id)})

    def _run(self, task: Task, extraction: Any) -> None:
        decoded = self._timed(task, "decode", self.stages.decode, task, extraction)
        self._finish(task, decoded)

    def _decode(self, task: Task, extraction: Any, into: dict[int, Any], i: int) -> None:
        into[i] = self._timed(task, "decode", self.stages.decode, task, extraction)

    def _finish(self, task: Task, decoded: Any) -> None:
        attributed = self._timed(task, "attribution", self._attribution, task, decoded)
        # The graph names every rung the status names, the attribution fallback included.
        plan = dataclasses.replace(task.plan, degraded=task.degraded)
        graph = task.pipeline.graph(task.job, decoded, attributed, plan)
        check_deadline(task)
        self._timed(task, "persist", self._persist, task, graph)

    def _share_attribution(self, tasks: Sequence[Task], decoded: Sequence[Any]) -> None:
        """One batched gradient attribution for the jobs planned for it; each job's attribution stage
        then takes its share. Its time counts for every job in it, as extract's does."""
        wanted = [i for i, t in enumerate(tasks) if t.plan.attribution == GRADIENT]
        # A batch of one takes this path too: the shared pass starts at the hook layer (and, for the
        # shipped encoders, runs the written-out last block), where the one-job path reruns the
        # whole model with the SAE spliced in.
        if self.settings.attribution_batching != "on" or not wanted:
            return
        pipeline = tasks[wanted[0]].pipeline
        started = time.perf_counter()
        try:
            results = pipeline.attribute_batch([decoded[i] for i in wanted], [tasks[i].plan for i in wanted])
        except Exception:  # the batch could not run at all: each job computes its own, as unbatched
            log.exception("batched attribution failed for %d jobs; attributing one at a time", len(wanted))
            return
        elapsed = time.perf_counter() - started
        self.sink.record("stage_duration", "observe", elapsed, stage="attribution")
        for i, result in zip(wanted, results, strict=True):
            tasks[i].shared = result
            tasks[i].stage_ms["attribution"] = round(elapsed * 1000, 3)

    def _timed(self, task: Task, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        check_deadline(task)
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            elapsed = time.perf_counter() - started
            # Adds to the time of a shared pass this job already waited for (set by _share_attribution).
            task.stage_ms[stage] = round(task.stage_ms.get(stage, 0.0) + elapsed * 1000, 3)
            if stage != "attribution" or task.shared is None:  # a shared pass observed itself once
                self.sink.record("stage_duration", "observe", elapsed, stage=stage)

    def _attribution(self, task: Task, decoded: Any) -> Any:
        result = self.stages.attribution(task, decoded)
        self.sink.record("attribution_method", "inc", method=str(task.attribution))
        return result

    def _persist(self, task: Task, graph: dict[str, Any]) -> None:
        key, data = graph_key(task.job.trace_id), graphfile.encode(graph, max_bytes=task.plan.max_bytes)
        retries = self.settings.persist_retries
        for attempt in range(retries + 1):
            try:
                self.blobs.put(key, data)
                return
            except BlobWriteError as exc:
                if attempt == retries:
                    raise BlobWriteError(f"{exc.message} (gave up after {retries} retries)", key=key) from exc
                self.sink.record("persist_retries", "inc")
                time.sleep(self.settings.persist_backoff_s * 2**attempt)  # backoff between real retries
