"""The worker against a small deterministic fake Pipeline (the seam the real pipeline plugs into)."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hif.chaos import ChaosReader, Fault, apply_change
from hif.errors import AttributionError, BlobWriteError
from hif.explainer import graphfile
from hif.explainer.featureset import FeaturesetInfo
from hif.explainer.plan import GRADIENT, HEURISTIC, Plan
from hif.explainer.service.events import DirectSink
from hif.explainer.service.handler import ATTRIBUTION_FALLBACK
from hif.explainer.service.worker import Worker
from hif.explainer.settings import ExplainerSettings, SlaSettings
from hif.metrics import ExplainerMetrics
from hif.store.base import BackpressureLevel, BackpressureSignal, Job, TraceRecord, TraceState, graph_key
from hif.store.local import LocalBlobStore
from hif.store.sqlite import SqliteJobQueue, SqliteTraceStore

INFO = FeaturesetInfo(
    name="fake-fs",
    description="",
    model="none",
    model_kind="encoder",
    layers=(3, 4),
    latents=64,
    k=8,
    sae_path=None,
)


class FakePipeline:
    """Deterministic stand-in: 'features' are character codes, so results are checkable."""

    featureset = INFO

    def __init__(self, *, attribution_error: bool = False) -> None:
        self.attribution_error = attribution_error
        self.extract_batches: list[int] = []
        self.attribute_batches: list[int] = []

    def default_plan(self, granularity: str) -> Plan:
        return Plan(granularity=granularity, top_k=8, layers=(3, 4))

    def extract(self, jobs: Sequence[Job], plans: Sequence[Plan]) -> list[Any]:
        self.extract_batches.append(len(jobs))
        return [job.prompt + " " + job.completion for job in jobs]

    def decode(self, extraction: Any, plan: Plan) -> Any:
        return sorted({ord(c) for c in extraction})[: plan.top_k]

    def attribute(self, decoding: Any, plan: Plan) -> Any:
        if self.attribution_error:
            raise AttributionError("no gradient")
        return {"method": GRADIENT, "features": decoding}

    def attribute_batch(self, decodings: Sequence[Any], plans: Sequence[Plan]) -> list[Any]:
        self.attribute_batches.append(len(decodings))
        if self.attribution_error:
            return [AttributionError("no gradient") for _ in decodings]
        return [{"method": GRADIENT, "features": d} for d in decodings]

    def heuristic(self, decoding: Any, plan: Plan) -> Any:
        return {"method": HEURISTIC, "features": decoding}

    def graph(self, job: Job, decoding: Any, attribution: Any, plan: Plan) -> dict[str, Any]:
        return {
            "metadata": {"trace_id": job.trace_id, "granularity": plan.granularity},
            "nodes": [{"feature": f} for f in attribution["features"]],
            "links": [],
            "attribution": attribution["method"],
        }


class FlakyBlobs(LocalBlobStore):
    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def put(self, key: str, data: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise BlobWriteError("disk hiccup")
        super().put(key, data)


@dataclasses.dataclass
class Rig:
    queue: SqliteJobQueue
    state: SqliteTraceStore
    blobs: LocalBlobStore
    pipeline: FakePipeline
    metrics: ExplainerMetrics
    chaos_path: Path

    def worker(self, **settings: Any) -> Worker:
        defaults: dict[str, Any] = {"persist_backoff_s": 0.0, "visibility_timeout_s": 5.0}
        return Worker(
            queue=self.queue,
            state=self.state,
            blobs=self.blobs,
            pipelines=lambda _: self.pipeline,
            settings=ExplainerSettings(**{**defaults, **settings}),
            sla=SlaSettings(),
            sink=DirectSink(self.metrics),
            consumer="w1",
            chaos=ChaosReader(self.chaos_path, min_interval_s=0.0),
            rng=random.Random(0),
        )

    def submit(
        self, trace_id: str, *, granularity: str = "sentence", ttl_s: float = 60.0, age_s: float = 0.0
    ) -> None:
        now = time.time()
        created = now - age_s
        self.state.create(
            [
                TraceRecord(
                    trace_id=trace_id,
                    tenant="alpha",
                    state=TraceState.QUEUED,
                    granularity_requested=granularity,
                    granularity=granularity,
                    features_requested="fake-fs",
                    features_resolved="fake-fs",
                    created_at=created,
                    updated_at=created,
                    expires_at=created + ttl_s,
                )
            ]
        )
        self.queue.enqueue(
            [
                Job(
                    trace_id=trace_id,
                    tenant="alpha",
                    granularity=granularity,
                    featureset="fake-fs",
                    prompt="why is the sky blue",
                    completion="Rayleigh scattering.",
                    created_at=created,
                    expires_at=created + ttl_s,
                    budget_s=1.5,
                )
            ]
        )

    def record(self, trace_id: str) -> TraceRecord:
        rec = self.state.get(trace_id)
        assert rec is not None
        return rec

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    db = tmp_path / "hif.db"
    return Rig(
        SqliteJobQueue(db),
        SqliteTraceStore(db),
        LocalBlobStore(tmp_path / "blobs"),
        FakePipeline(),
        ExplainerMetrics(CollectorRegistry()),
        tmp_path / "chaos.json",
    )


def test_jobs_complete_with_graph_stage_times_and_metrics(rig: Rig) -> None:
    for i, g in enumerate(["sentence", "token", "sentence"]):
        rig.submit(f"t{i}", granularity=g)
    assert rig.worker().run_once() == 3
    assert rig.pipeline.extract_batches == [3]  # one forward pass for the leased batch
    for i in range(3):
        rec = rig.record(f"t{i}")
        assert rec.state is TraceState.COMPLETE and rec.attribution == GRADIENT and rec.degraded == ()
        assert set(rec.stage_ms) == {"extract", "decode", "attribution", "persist"}
        stored = rig.blobs.get(graph_key(f"t{i}")) or b""
        assert stored.startswith(graphfile.GZIP_MAGIC)  # stored compressed
        graph = json.loads(graphfile.decode(stored))
        assert graph["metadata"]["trace_id"] == f"t{i}" and graph["nodes"]
    assert rig.queue.depth() == 0
    assert rig.value("explainer_jobs_total", state="complete") == 3
    assert rig.value("explainer_stage_duration_seconds_count", stage="decode") == 3
    assert rig.value("explainer_stage_duration_seconds_count", stage="extract") == 1


def test_gradient_attributions_of_a_batch_share_one_call(rig: Rig) -> None:
    for i in range(3):
        rig.submit(f"t{i}")
    rig.worker().run_once()
    assert rig.pipeline.attribute_batches == [3]
    for i in range(3):
        rec = rig.record(f"t{i}")
        assert rec.state is TraceState.COMPLETE and rec.attribution == GRADIENT
        assert rec.stage_ms["attribution"] >= 0.0
    # One observation for the shared pass, none for the jobs that took their share of it.
    assert rig.value("explainer_stage_duration_seconds_count", stage="attribution") == 1


def test_attribution_batching_off_attributes_one_job_at_a_time(rig: Rig) -> None:
    for i in range(3):
        rig.submit(f"t{i}")
    rig.worker(attribution_batching="off").run_once()
    assert rig.pipeline.attribute_batches == []
    assert all(rig.record(f"t{i}").state is TraceState.COMPLETE for i in range(3))
    assert rig.value("explainer_stage_duration_seconds_count", stage="attribution") == 3


def test_batched_attribution_error_falls_back_per_job(rig: Rig) -> None:
    rig.pipeline.attribution_error = True
    for i in range(2):
        rig.submit(f"t{i}")
    rig.worker().run_once()
    assert rig.pipeline.attribute_batches == [2]
    for i in range(2):
        rec = rig.record(f"t{i}")
        assert rec.state is TraceState.COMPLETE and rec.attribution == HEURISTIC
        assert ATTRIBUTION_FALLBACK in rec.degraded


def test_batches_are_cut_by_token_budget(rig: Rig) -> None:
    for i in range(4):
        rig.submit(f"t{i}")
    rig.worker(batch_max_tokens=20).run_once()  # each fake job is ~11 estimated tokens
    assert rig.pipeline.extract_batches == [1, 1, 1, 1]


def test_terminal_and_expired_jobs_are_acked_unrun(rig: Rig) -> None:
    rig.submit("done")
    rig.state.transition("done", from_states=[TraceState.QUEUED], to_state=TraceState.COMPLETE)
    rig.submit("stale", ttl_s=1.0, age_s=2.0)
    rig.worker().run_once()
    assert rig.pipeline.extract_batches == []
    assert rig.record("stale").state is TraceState.EXPIRED
    assert rig.value("explainer_jobs_total", state="expired") == 1
    assert rig.queue.depth() == 0


def test_attribution_error_falls_back_to_heuristic(rig: Rig) -> None:
    rig.pipeline.attribution_error = True
    rig.submit("t")
    rig.worker().run_once()
    rec = rig.record("t")
    assert rec.state is TraceState.COMPLETE and rec.attribution == HEURISTIC
    assert ATTRIBUTION_FALLBACK in rec.degraded


def test_persist_is_retried_then_fails_the_trace(rig: Rig, tmp_path: Path) -> None:
    rig.blobs = FlakyBlobs(tmp_path / "flaky", failures=2)
    rig.submit("ok")
    rig.worker(persist_retries=3).run_once()
    assert rig.record("ok").state is TraceState.COMPLETE
    assert rig.value("explainer_persist_retries_total") == 2
    rig.blobs = FlakyBlobs(tmp_path / "flaky2", failures=10)
    rig.submit("bad")
    rig.worker(persist_retries=2).run_once()
    rec = rig.record("bad")
    assert rec.state is TraceState.FAILED and rec.error and rec.error.startswith("persist:")
    assert not rig.blobs.exists(graph_key("bad"))


@pytest.mark.parametrize(
    ("fault", "state", "attribution", "flag"),
    [
        (Fault(flag="drop-s3", percent=100), TraceState.FAILED, GRADIENT, "drop-s3"),
        (
            Fault(flag="fail-attribution", percent=100, mode="fallback"),
            TraceState.COMPLETE,
            HEURISTIC,
            "fail-attribution",
        ),
        (
            Fault(flag="fail-attribution", percent=100, mode="fail"),
            TraceState.FAILED,
            None,
            "fail-attribution",
        ),
        (Fault(flag="slow-sae", percent=100, jitter_ms=40), TraceState.COMPLETE, GRADIENT, "slow-sae"),
    ],
)
def test_chaos_flags(rig: Rig, fault: Fault, state: TraceState, attribution: str | None, flag: str) -> None:
    apply_change(enable=fault, path=rig.chaos_path)
    rig.submit("t")
    rig.worker(persist_retries=1).run_once()
    rec = rig.record("t")
    assert rec.state is state and rec.attribution == attribution
    assert rig.value("chaos_injections_total", flag=flag) >= 1
    if flag == "slow-sae":
        assert rec.stage_ms["decode"] >= 20  # the injected latency lands in the decode stage


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"version": 1, "flags": {"drop-s3": {"percent": 100, "expires_at": "never"}}}',
        '{"version": 1, "flags": {"slow-sae": {"percent": 100, "jitter_ms": NaN}}}',
        '{"version": 1, "flags": {"fail-attribution": {"mode": ["fail"]}, "drop-s3": 7}}',
    ],
)
def test_a_malformed_chaos_file_means_no_chaos(rig: Rig, text: str) -> None:
    rig.chaos_path.write_text(text)
    rig.submit("t")
    rig.worker().run_once()
    rec = rig.record("t")
    assert rec.state is TraceState.COMPLETE and rec.attribution == GRADIENT
    assert rig.value("chaos_injections_total", flag="drop-s3") == 0


def test_soft_backpressure_applies_the_ladder(rig: Rig) -> None:
    rig.state.publish_backpressure(
        BackpressureSignal(level=BackpressureLevel.SOFT, reason="t", updated_at=time.time())
    )
    rig.submit("t", granularity="token")
    rig.worker().run_once()
    rec = rig.record("t")
    assert rec.state is TraceState.COMPLETE and rec.granularity == "token"
    assert rec.degraded == ("reduce-topk", "reduce-layers", "cap-nodes")
    assert rig.value("backpressure_actions_total", action="reduce-topk", level="soft") == 1


def test_hard_backpressure_downgrades_and_expires_early(rig: Rig) -> None:
    rig.state.publish_backpressure(
        BackpressureSignal(level=BackpressureLevel.HARD, reason="t", updated_at=time.time())
    )
    rig.submit("fresh", granularity="token")
    rig.submit("late", age_s=2.0)  # already past its 1.5 s budget
    rig.worker().run_once()
    fresh, late = rig.record("fresh"), rig.record("late")
    assert fresh.state is TraceState.COMPLETE and fresh.granularity == "sentence"
    assert fresh.granularity_requested == "token" and fresh.attribution == HEURISTIC
    assert "downgrade-token-sentence" in fresh.degraded
    assert late.state is TraceState.EXPIRED and "expire-early" in late.degraded
    assert rig.value("backpressure_actions_total", action="expire-early", level="hard") == 1


def test_redelivered_job_after_crash_completes_and_poison_job_fails(rig: Rig) -> None:
    rig.submit("t")
    rig.queue.lease("crashed", max_jobs=1, visibility_timeout_s=0.01)
    rig.state.transition("t", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING)
    time.sleep(0.02)  # the crashed holder's lease runs out
    rig.worker().run_once()
    rec = rig.record("t")
    assert rec.state is TraceState.COMPLETE and rec.attempts == 2
    rig.submit("poison")
    for _ in range(2):
        rig.queue.lease("crashed", max_jobs=1, visibility_timeout_s=0.01)
        time.sleep(0.02)
    rig.worker(max_attempts=2).run_once()
    assert rig.record("poison").state is TraceState.FAILED


def test_stop_releases_unstarted_jobs_and_heartbeat_extends(rig: Rig) -> None:
    rig.submit("t")
    stop = threading.Event()
    stop.set()
    rig.worker().run_once(stop=stop)
    assert rig.record("t").state is TraceState.RUNNING
    leases = rig.queue.lease("other", max_jobs=1, visibility_timeout_s=0.2)  # released at once
    assert [le.job.trace_id for le in leases] == ["t"]
    w = rig.worker(visibility_timeout_s=2.0)
    w._hold(leases[0])
    w.heartbeat()  # 0.2 s left < half of 2 s: extended to 2 s
    time.sleep(0.3)  # past the original lease deadline
    assert rig.queue.lease("third", max_jobs=1, visibility_timeout_s=5) == []


class TakeoverPipeline(FakePipeline):
    """While the slow worker decodes, its lease is released (it went silent) and a twin runs the job."""

    def __init__(self, rig: Rig) -> None:
        super().__init__()
        self.rig, self.taken_over = rig, False

    def decode(self, extraction: Any, plan: Plan) -> Any:
        if not self.taken_over:
            self.taken_over = True
            assert self.rig.queue.release("slow") == 1
            twin = self.rig.worker()
            assert twin.run_once() == 1  # re-delivered as attempt 2, completed by the twin
        return super().decode(extraction, plan)


def test_a_slow_worker_whose_lease_was_taken_over_finishes_once(rig: Rig) -> None:
    rig.pipeline = TakeoverPipeline(rig)
    rig.submit("t")
    slow = rig.worker()
    slow.consumer = "slow"
    assert slow.run_once() == 1
    rec = rig.record("t")
    assert (rec.state, rec.attempts) == (TraceState.COMPLETE, 2)
    assert rig.value("explainer_jobs_total", state="complete") == 1  # completed once, not twice
    assert rig.queue.lease("any", max_jobs=5, visibility_timeout_s=5) == []  # the job is gone
