"""Chaos faults for the explainer, as wrappers around the handler's stages and its blob store.

Flags are read through :class:`~hif.chaos.ChaosReader` (a corrupt or missing control file means no
chaos; reading never raises) and each job rolls a flag's ``percent`` with the worker's rng:

- ``slow-sae`` delays the decode stage (the delay is inside its timing, never past the job's TTL,
  and interrupted by shutdown);
- ``fail-attribution`` makes gradient attribution fail: mode ``fallback`` takes the heuristic
  fallback a real failure takes, mode ``fail`` fails the trace;
- ``drop-s3`` fails a blob write, which the handler retries like a real one.

Every injection counts in ``chaos_injections_total{flag}``::

    faults = Faults(ChaosReader(), random.Random(), sink)
    handler = Handler(blobs=ChaosBlobStore(blobs, faults), stages=faults.wrap(STAGES), ...)
"""

from __future__ import annotations

import random
import time
from typing import Any

from hif.chaos import DROP_S3, FAIL_ATTRIBUTION, SLOW_SAE, ChaosReader, Fault
from hif.errors import AttributionError, BlobWriteError
from hif.explainer.plan import GRADIENT
from hif.explainer.service.events import MetricsSink
from hif.explainer.service.handler import (
    ReleasedError,
    Stage,
    StageFailedError,
    Stages,
    Task,
    check_deadline,
    fall_back,
)
from hif.store.base import BlobStore

INJECTED = "chaos fail-attribution injected a failure"


class Faults:
    """Which faults fire for the job at hand, drawn from the control file and the worker's rng."""

    def __init__(self, chaos: ChaosReader, rng: random.Random, sink: MetricsSink) -> None:
        self.chaos, self.rng, self.sink = chaos, rng, sink

    def draw(self, flag: str, *, count: bool = True) -> Fault | None:
        """The fault for ``flag`` when it fires for this job (counted unless told not to), else None."""
        fault = self.chaos.active().get(flag)
        if fault is None or not fault.hits(self.rng):
            return None
        if count:
            self.count(flag)
        return fault

    def count(self, flag: str) -> None:
        self.sink.record("chaos_injections", "inc", flag=flag)

    def wrap(self, stages: Stages) -> Stages:
        return Stages(
            decode=slow_decode(stages.decode, self), attribution=failing_attribution(stages.attribution, self)
        )


def slow_decode(inner: Stage, faults: Faults) -> Stage:
    def decode(task: Task, extraction: Any) -> Any:
        fault = faults.draw(SLOW_SAE)
        if fault is not None:
            # Injected latency is what slow-sae means, not a stand-in for work. It never outlasts the
            # job's TTL (the deadline check then expires the job promptly) nor a shutdown.
            delay_s = fault.jitter_ms / 1000 * faults.rng.uniform(0.5, 1.5)
            if task.stop.wait(min(delay_s, max(0.0, task.job.expires_at - time.time()))):
                raise ReleasedError()
            check_deadline(task)
        return inner(task, extraction)

    return decode


def failing_attribution(inner: Stage, faults: Faults) -> Stage:
    def attribution(task: Task, decoded: Any) -> Any:
        fault = faults.draw(FAIL_ATTRIBUTION, count=False)
        # Fallback mode only breaks the gradient: a job already planned for the heuristic is untouched.
        if fault is None or (fault.mode != "fail" and task.plan.attribution != GRADIENT):
            return inner(task, decoded)
        faults.count(FAIL_ATTRIBUTION)
        if fault.mode == "fail":
            raise StageFailedError(f"attribution: {INJECTED}")
        return fall_back(task, decoded, AttributionError(INJECTED))

    return attribution


class ChaosBlobStore:
    """A :class:`~hif.store.base.BlobStore` whose writes fail while ``drop-s3`` fires."""

    def __init__(self, inner: BlobStore, faults: Faults) -> None:
        self.inner, self.faults = inner, faults

    def put(self, key: str, data: bytes) -> None:
        if self.faults.draw(DROP_S3) is not None:
            raise BlobWriteError("chaos drop-s3 injected a write failure", key=key)
        self.inner.put(key, data)

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def check(self) -> None:
        self.inner.check()  # start-up checks see the real store: chaos only fails writes

    def close(self) -> None:
        self.inner.close()
