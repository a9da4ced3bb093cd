"""The SQLite queue and trace store: leases, re-delivery, compare-and-set, expiry, many processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from hif.store.base import BackpressureLevel, BackpressureSignal, Job, TraceRecord, TraceState
from hif.store.sqlite import SqliteJobQueue, SqliteTraceStore


def make_job(trace_id: str, *, created_at: float | None = None, ttl_s: float = 60.0) -> Job:
    now = time.time() if created_at is None else created_at
    return Job(
        trace_id=trace_id,
        tenant="alpha",
        granularity="sentence",
        featureset="fs",
        prompt="p",
        completion="c",
        created_at=now,
        expires_at=now + ttl_s,
        budget_s=1.5,
    )


def make_record(
    trace_id: str, *, state: TraceState = TraceState.QUEUED, expires_at: float | None = None
) -> TraceRecord:
    now = time.time()
    return TraceRecord(
        trace_id=trace_id,
        tenant="alpha",
        state=state,
        granularity_requested="token",
        granularity="token",
        features_requested="fs",
        features_resolved="fs",
        created_at=now,
        updated_at=now,
        expires_at=now + 60 if expires_at is None else expires_at,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "hif.db"


def test_lease_ack_removes_job_and_fifo_order(db: Path) -> None:
    q = SqliteJobQueue(db)
    q.enqueue([make_job("a"), make_job("b"), make_job("c")])
    leases = q.lease("w1", max_jobs=2, visibility_timeout_s=30)
    assert [le.job.trace_id for le in leases] == ["a", "b"]
    assert all(le.attempt == 1 for le in leases)
    assert q.depth() == 1  # only "c" waits; the leased two are in hand
    q.ack(leases[0])
    q.ack(leases[0])  # idempotent
    assert q.depth() == 1 and q.extend(leases[1], 30) != leases[1]
    assert [le.job.trace_id for le in q.lease("w2", max_jobs=5, visibility_timeout_s=30)] == ["c"]


def test_expired_lease_is_redelivered_with_attempt_counted(db: Path) -> None:
    q = SqliteJobQueue(db)
    q.enqueue([make_job("a")])
    first = q.lease("w1", max_jobs=1, visibility_timeout_s=0.05)[0]
    assert q.lease("w2", max_jobs=1, visibility_timeout_s=30) == []
    time.sleep(0.1)  # let the visibility timeout pass (the behaviour under test is the timeout)
    second = q.lease("w2", max_jobs=1, visibility_timeout_s=30)[0]
    assert second.attempt == 2 and second.consumer == "w2"
    q.ack(first)  # a stale ack from the crashed holder does not remove the new holder's job
    assert q.extend(second, 30) != second
    q.ack(second)
    assert q.depth() == 0


def test_extend_keeps_lease(db: Path) -> None:
    q = SqliteJobQueue(db)
    q.enqueue([make_job("a")])
    lease = q.lease("w1", max_jobs=1, visibility_timeout_s=0.05)[0]
    extended = q.extend(lease, 30)
    assert extended.deadline > lease.deadline
    time.sleep(0.1)
    assert q.lease("w2", max_jobs=1, visibility_timeout_s=30) == []


def test_oldest_age_and_blocking_lease(db: Path) -> None:
    q = SqliteJobQueue(db)
    assert q.oldest_age_s() == 0.0
    started = time.monotonic()
    assert q.lease("w", max_jobs=1, visibility_timeout_s=1, block_s=0.1) == []
    assert time.monotonic() - started >= 0.09
    q.enqueue([make_job("a", created_at=time.time() - 5)])
    assert 4.9 < q.oldest_age_s() < 6


def _lease_all(path: str, consumer: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q = SqliteJobQueue(Path(path))
    got: list[str] = []
    while True:
        leases = q.lease(consumer, max_jobs=3, visibility_timeout_s=60)
        if not leases:
            break
        for le in leases:
            got.append(le.job.trace_id)
            q.ack(le)
    out.put(got)


def test_many_processes_never_lease_one_job_twice(db: Path) -> None:
    SqliteJobQueue(db).enqueue([make_job(f"j{i:03d}") for i in range(150)])
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_lease_all, args=(str(db), f"w{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    leased = [t for r in results for t in r]
    assert sorted(leased) == [f"j{i:03d}" for i in range(150)]


def _lease_and_crash(path: str) -> None:
    SqliteJobQueue(Path(path)).lease("doomed", max_jobs=1, visibility_timeout_s=0.2)
    os._exit(9)  # die holding the lease, like kill -9


def test_crashed_process_job_is_redelivered(db: Path) -> None:
    SqliteJobQueue(db).enqueue([make_job("a")])
    proc = multiprocessing.get_context("fork").Process(target=_lease_and_crash, args=(str(db),))
    proc.start()
    proc.join(timeout=30)
    q = SqliteJobQueue(db)
    assert q.lease("w", max_jobs=1, visibility_timeout_s=30) == []
    leases = q.lease("w", max_jobs=1, visibility_timeout_s=30, block_s=2.0)
    assert [le.attempt for le in leases] == [2]


def test_transition_is_compare_and_set(db: Path) -> None:
    s = SqliteTraceStore(db)
    s.create([make_record("t")])
    running = s.transition("t", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING, attempts=1)
    assert running is not None and running.state is TraceState.RUNNING and running.attempts == 1
    assert s.transition("t", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING) is None
    done = s.transition(
        "t",
        from_states=[TraceState.RUNNING],
        to_state=TraceState.COMPLETE,
        stage_ms={"extract": 1.5},
        degraded=("reduce-topk",),
        attribution="gradient",
    )
    assert done is not None
    got = s.get("t")
    assert got is not None and got.state is TraceState.COMPLETE
    assert got.stage_ms == {"extract": 1.5} and got.degraded == ("reduce-topk",)
    assert s.update("t", error="late") is None  # terminal traces are never rewritten
    assert s.transition("missing", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING) is None


def test_expire_due_moves_only_pending_past_deadline(db: Path) -> None:
    s = SqliteTraceStore(db)
    past = time.time() - 1
    s.create(
        [
            make_record("old", expires_at=past),
            make_record("new"),
            make_record("done", state=TraceState.COMPLETE, expires_at=past),
        ]
    )
    assert s.expire_due() == ["old"]
    assert s.expire_due() == []
    old = s.get("old")
    assert old is not None and old.state is TraceState.EXPIRED and old.reason
    counts = s.counts()
    assert counts["expired"] == 1 and counts["queued"] == 1 and counts["complete"] == 1


def test_backpressure_signal_round_trip(db: Path) -> None:
    s = SqliteTraceStore(db)
    assert s.read_backpressure() is None
    s.publish_backpressure(BackpressureSignal(level=BackpressureLevel.HARD, reason="lag", updated_at=12.0))
    got = SqliteTraceStore(db).read_backpressure()
    assert got == BackpressureSignal(level=BackpressureLevel.HARD, reason="lag", updated_at=12.0)
