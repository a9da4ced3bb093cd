"""Chaos faults as wrappers: each wraps one stage or the blob store and leaves the rest untouched."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hif.chaos import ChaosReader, Fault, apply_change
from hif.errors import BlobWriteError, JobExpiredError
from hif.explainer.plan import GRADIENT, HEURISTIC, Plan
from hif.explainer.service.events import DirectSink
from hif.explainer.service.faults import ChaosBlobStore, Faults
from hif.explainer.service.handler import (
    ATTRIBUTION_FALLBACK,
    STAGES,
    ReleasedError,
    StageFailedError,
    Task,
)
from hif.metrics import ExplainerMetrics
from hif.store.base import Lease
from hif.store.local import LocalBlobStore
from tests._records import make_job


class Methods:
    """Just enough of a Pipeline for the attribution and decode stages: records what ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def decode(self, extraction: Any, plan: Plan) -> Any:
        self.calls.append("decode")
        return extraction

    def attribute(self, decoding: Any, plan: Plan) -> Any:
        self.calls.append(GRADIENT)
        return GRADIENT

    def heuristic(self, decoding: Any, plan: Plan) -> Any:
        self.calls.append(HEURISTIC)
        return HEURISTIC


def task(method: str = GRADIENT, *, ttl_s: float = 60.0, stop: threading.Event | None = None) -> Task:
    now = time.time()
    job = make_job("t1", tenant="a", created_at=now, ttl_s=ttl_s)
    return Task(
        lease=Lease(job=job, lease_id="l", consumer="w", attempt=1, deadline=now + 30),
        plan=Plan(granularity="sentence", top_k=4, layers=(1,), attribution=method),
        pipeline=Methods(),  # type: ignore[arg-type]
        level="none",
        stop=stop or threading.Event(),
    )


@pytest.fixture
def metrics() -> ExplainerMetrics:
    return ExplainerMetrics(CollectorRegistry())


def faults_with(tmp_path: Path, metrics: ExplainerMetrics, fault: Fault | None) -> Faults:
    path = tmp_path / "chaos.json"
    if fault is not None:
        apply_change(enable=fault, path=path)
    return Faults(ChaosReader(path, min_interval_s=0.0), random.Random(0), DirectSink(metrics))


def injected(metrics: ExplainerMetrics, flag: str) -> float:
    return metrics.registry.get_sample_value("chaos_injections_total", {"flag": flag}) or 0.0


def test_no_fault_runs_the_wrapped_stages_unchanged(tmp_path: Path, metrics: ExplainerMetrics) -> None:
    stages = faults_with(tmp_path, metrics, None).wrap(STAGES)
    t = task()
    assert stages.decode(t, "x") == "x" and stages.attribution(t, "x") == GRADIENT
    assert t.attribution == GRADIENT and t.degraded == () and t.pipeline.calls == ["decode", GRADIENT]  # type: ignore[attr-defined]


def test_fallback_mode_takes_the_heuristic_path_a_real_failure_takes(
    tmp_path: Path, metrics: ExplainerMetrics
) -> None:
    stages = faults_with(tmp_path, metrics, Fault(flag="fail-attribution", mode="fallback")).wrap(STAGES)
    t = task()
    assert stages.attribution(t, "x") == HEURISTIC
    assert t.attribution == HEURISTIC and t.degraded == (ATTRIBUTION_FALLBACK,)
    assert t.pipeline.calls == [HEURISTIC]  # type: ignore[attr-defined]  # the gradient never ran
    assert injected(metrics, "fail-attribution") == 1


def test_fallback_mode_leaves_a_heuristic_plan_alone_and_uncounted(
    tmp_path: Path, metrics: ExplainerMetrics
) -> None:
    stages = faults_with(tmp_path, metrics, Fault(flag="fail-attribution", mode="fallback")).wrap(STAGES)
    t = task(HEURISTIC)
    assert stages.attribution(t, "x") == HEURISTIC and t.degraded == ()
    assert injected(metrics, "fail-attribution") == 0


def test_fail_mode_fails_even_a_heuristic_plan(tmp_path: Path, metrics: ExplainerMetrics) -> None:
    stages = faults_with(tmp_path, metrics, Fault(flag="fail-attribution", mode="fail")).wrap(STAGES)
    with pytest.raises(StageFailedError, match=r"^attribution: chaos"):
        stages.attribution(task(HEURISTIC), "x")
    assert injected(metrics, "fail-attribution") == 1


def test_slow_sae_is_cut_short_by_the_ttl_and_by_shutdown(tmp_path: Path, metrics: ExplainerMetrics) -> None:
    stages = faults_with(tmp_path, metrics, Fault(flag="slow-sae", jitter_ms=60_000)).wrap(STAGES)
    with pytest.raises(JobExpiredError):
        stages.decode(task(ttl_s=0.05), "x")  # waits out the 50 ms left, not the minute
    stop = threading.Event()
    stop.set()
    with pytest.raises(ReleasedError):
        stages.decode(task(stop=stop), "x")
    assert injected(metrics, "slow-sae") == 2


def test_chaos_blob_store_drops_writes_and_passes_reads(tmp_path: Path, metrics: ExplainerMetrics) -> None:
    inner = LocalBlobStore(tmp_path / "blobs")
    inner.put("k", b"v")
    blobs = ChaosBlobStore(inner, faults_with(tmp_path, metrics, Fault(flag="drop-s3")))
    with pytest.raises(BlobWriteError, match="drop-s3"):
        blobs.put("k2", b"v2")
    assert not inner.exists("k2") and blobs.get("k") == b"v" and blobs.exists("k")
    assert injected(metrics, "drop-s3") == 1
