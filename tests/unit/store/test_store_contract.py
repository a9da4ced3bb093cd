"""One contract for every job-queue and trace-state backend: SQLite (embedded) and Redis (distributed).

The same tests run against each URL scheme, so the explainer and gateway can rely on identical
semantics whichever backend a deployment picks: FIFO leases, re-delivery after a lease deadline
(with the attempt counted), holder-only ack/extend, compare-and-set transitions that hold across
processes, expiry, counts and the shared backpressure signal. The ``url`` fixture (conftest.py)
gives each test a fresh backend of each kind; a backend-specific test (Redis restarts, S3) sits in
that backend's own file.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from hif.store import open_queue, open_state
from hif.store.base import BackpressureLevel, BackpressureSignal, TraceState
from tests._records import make_job, make_record

FORK = multiprocessing.get_context("fork")


# --- job queue ---------------------------------------------------------------------------------


def test_fifo_lease_and_idempotent_ack(url: str) -> None:
    q = open_queue(url)
    q.enqueue([make_job("a"), make_job("b"), make_job("c")])
    leases = q.lease("w1", max_jobs=2, visibility_timeout_s=30)
    assert [le.job.trace_id for le in leases] == ["a", "b"]
    assert [le.attempt for le in leases] == [1, 1]
    assert leases[0].job == make_job("a", created_at=leases[0].job.created_at)
    assert q.depth() == 1  # leased jobs are in hand, not waiting
    q.ack(leases[0])
    q.ack(leases[0])
    assert q.depth() == 1
    other = open_queue(url)
    assert [le.job.trace_id for le in other.lease("w2", max_jobs=5, visibility_timeout_s=30)] == ["c"]
    assert q.lease("w3", max_jobs=5, visibility_timeout_s=30) == []


def test_lag_and_depth_count_waiting_work_not_leases(url: str) -> None:
    q = open_queue(url)
    q.enqueue([make_job("old", created_at=time.time() - 20), make_job("new", created_at=time.time() - 2)])
    assert q.depth() == 2 and 19 < q.oldest_age_s() < 25
    q.lease("dead", max_jobs=1, visibility_timeout_s=30)  # takes "old", then never acks
    assert q.depth() == 1 and 1 < q.oldest_age_s() < 5  # the orphaned lease is not backlog
    q.lease("alive", max_jobs=1, visibility_timeout_s=30)
    assert (q.depth(), q.oldest_age_s()) == (0, 0.0)


def test_release_hands_a_dead_consumers_jobs_out_again_as_retries(url: str) -> None:
    q = open_queue(url)
    q.enqueue([make_job("a"), make_job("b")])
    dead = q.lease("dead", max_jobs=2, visibility_timeout_s=30)
    assert q.lease("other", max_jobs=2, visibility_timeout_s=30) == []
    assert q.release("dead") == 2 and q.depth() == 2
    again = q.lease("other", max_jobs=2, visibility_timeout_s=30)
    assert sorted((le.job.trace_id, le.attempt) for le in again) == [("a", 2), ("b", 2)]
    q.ack(dead[0])  # a late ack of the old holder leaves the retry alone
    assert q.extend(again[0], 30) != again[0]
    assert q.release("nobody") == 0


def test_release_silent_spares_consumers_that_beat(url: str) -> None:
    q = open_queue(url)
    q.enqueue([make_job("a"), make_job("b")])
    q.lease("quiet", max_jobs=1, visibility_timeout_s=30)
    q.lease("beating", max_jobs=1, visibility_timeout_s=30)
    time.sleep(0.3)  # the behaviour under test is a heartbeat going silent for a while
    q.heartbeat("beating")
    assert q.release_silent(0.2) == {"quiet": 1}
    assert [(le.job.trace_id, le.attempt) for le in q.lease("x", max_jobs=5, visibility_timeout_s=30)] == [
        ("a", 2)
    ]
    assert q.release_silent(0.2) == {}  # forgotten once released


def test_enqueue_of_a_queued_trace_is_ignored(url: str) -> None:
    q = open_queue(url)
    q.enqueue([make_job("a")])
    q.enqueue([make_job("a")])  # a retried enqueue (the gateway's writer retried a batch)
    assert q.depth() == 1


def test_expired_lease_is_redelivered_and_stale_holder_cannot_ack(url: str) -> None:
    q = open_queue(url)
    q.enqueue([make_job("a")])
    first = q.lease("w1", max_jobs=1, visibility_timeout_s=0.1)[0]
    assert q.lease("w2", max_jobs=1, visibility_timeout_s=30) == []
    time.sleep(0.2)  # the behaviour under test is the lease deadline passing
    second = q.lease("w2", max_jobs=1, visibility_timeout_s=30)[0]
    assert (second.job.trace_id, second.attempt, second.consumer) == ("a", 2, "w2")
    q.ack(first)
    assert q.depth() == 0 and q.extend(second, 30) != second  # still w2's
    assert q.extend(first, 30) == first  # lost: unchanged
    q.ack(second)
    assert q.depth() == 0


def test_same_consumer_re_lease_is_a_new_lease(url: str) -> None:
    q = open_queue(url)
    q.enqueue([make_job("a")])
    first = q.lease("w", max_jobs=1, visibility_timeout_s=0.1)[0]
    time.sleep(0.2)
    second = q.lease("w", max_jobs=1, visibility_timeout_s=30)[0]
    assert second.attempt == 2
    q.ack(first)  # the older lease of the same consumer is stale too
    assert q.extend(second, 30) != second  # still held by its new lease


def test_extend_pushes_the_deadline(url: str) -> None:
    q = open_queue(url)
    q.enqueue([make_job("a")])
    lease = q.lease("w1", max_jobs=1, visibility_timeout_s=0.1)
    extended = q.extend(lease[0], 30)
    assert extended.deadline > lease[0].deadline and extended.attempt == 1
    time.sleep(0.2)
    assert q.lease("w2", max_jobs=1, visibility_timeout_s=30) == []
    q.ack(extended)
    assert q.depth() == 0


def test_blocking_lease_waits_then_wakes_on_enqueue(url: str) -> None:
    q = open_queue(url)
    started = time.monotonic()
    assert q.lease("w", max_jobs=1, visibility_timeout_s=30, block_s=0.2) == []
    assert time.monotonic() - started >= 0.19
    timer = threading.Timer(0.2, lambda: open_queue(url).enqueue([make_job("late")]))
    timer.start()
    try:
        got = q.lease("w", max_jobs=1, visibility_timeout_s=30, block_s=10)
    finally:
        timer.cancel()
    assert [le.job.trace_id for le in got] == ["late"]


def test_oldest_age(url: str) -> None:
    q = open_queue(url)
    assert q.oldest_age_s() == 0.0
    q.enqueue([make_job("a", created_at=time.time() - 5), make_job("b")])
    assert 4.9 < q.oldest_age_s() < 6
    now = time.time()
    assert q.oldest_age_s(now=now + 10) == pytest.approx(q.oldest_age_s(now=now) + 10, abs=0.01)


def _drain(url: str, consumer: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q = open_queue(url)
    got: list[str] = []
    while leases := q.lease(consumer, max_jobs=3, visibility_timeout_s=60):
        for le in leases:
            got.append(le.job.trace_id)
            q.ack(le)
    out.put(got)


def test_many_processes_never_lease_one_job_twice(url: str) -> None:
    open_queue(url).enqueue([make_job(f"j{i:03d}") for i in range(120)])
    out = FORK.Queue()
    procs = [FORK.Process(target=_drain, args=(url, f"w{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    leased = [t for _ in procs for t in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    assert sorted(leased) == [f"j{i:03d}" for i in range(120)]


def _lease_and_die(url: str) -> None:
    open_queue(url).lease("doomed", max_jobs=1, visibility_timeout_s=0.3)
    os._exit(9)  # die holding the lease, as kill -9 would


def test_job_of_a_killed_process_is_redelivered(url: str) -> None:
    open_queue(url).enqueue([make_job("a")])
    proc = FORK.Process(target=_lease_and_die, args=(url,))
    proc.start()
    proc.join(timeout=30)
    q = open_queue(url)
    assert q.lease("w", max_jobs=1, visibility_timeout_s=30) == []
    leases = q.lease("w", max_jobs=1, visibility_timeout_s=30, block_s=3.0)
    assert [(le.job.trace_id, le.attempt) for le in leases] == [("a", 2)]


# --- trace state -------------------------------------------------------------------------------


def test_create_is_insert_or_ignore_and_round_trips(url: str) -> None:
    s = open_state(url)
    record = make_record("t")
    s.create([record])
    s.create([make_record("t", state=TraceState.SHED)])
    assert s.get("t") == record
    assert s.get("missing") is None


def test_transition_is_compare_and_set(url: str) -> None:
    s = open_state(url)
    s.create([make_record("t")])
    running = s.transition("t", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING, attempts=1)
    assert running is not None and running.state is TraceState.RUNNING and running.attempts == 1
    assert running.updated_at >= running.created_at
    assert s.transition("t", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING) is None
    updated = s.update("t", stage_ms={"extract": 1.5}, degraded=("reduce-topk",))
    assert updated is not None and updated.stage_ms == {"extract": 1.5}
    done = s.transition(
        "t",
        from_states=[TraceState.RUNNING],
        to_state=TraceState.COMPLETE,
        attribution="gradient",
        graph_key="graphs/t/t.json",
    )
    assert done is not None and done.degraded == ("reduce-topk",) and done.attribution == "gradient"
    assert s.get("t") == done
    assert s.update("t", error="late") is None  # terminal traces are never rewritten
    assert s.transition("missing", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING) is None


def _race(url: str, ids: list[str], who: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    s = open_state(url)
    won = [
        t
        for t in ids
        if s.transition(t, from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING, error=who)
    ]
    out.put((who, won))


def test_compare_and_set_has_one_winner_across_processes(url: str) -> None:
    ids = [f"t{i:03d}" for i in range(60)]
    open_state(url).create([make_record(t) for t in ids])
    out = FORK.Queue()
    procs = [FORK.Process(target=_race, args=(url, ids, f"p{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    winners = [t for won in results.values() for t in won]
    assert sorted(winners) == ids  # every trace moved exactly once
    s = open_state(url)
    for who, won in results.items():
        assert all(rec is not None and rec.error == who for rec in map(s.get, won))
    assert s.counts()["running"] == 60 and s.counts()["queued"] == 0


def test_expire_due_moves_only_pending_past_deadline(url: str) -> None:
    s = open_state(url)
    past = time.time() - 1
    s.create(
        [
            make_record("old", expires_at=past),
            make_record("new"),
            make_record("done", state=TraceState.COMPLETE, expires_at=past),
        ]
    )
    s.create([make_record("run", expires_at=past)])
    s.transition("run", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING)
    assert sorted(s.expire_due()) == ["old", "run"]
    assert s.expire_due() == []
    old = s.get("old")
    assert old is not None and old.state is TraceState.EXPIRED and old.reason
    counts = s.counts()
    assert (counts["expired"], counts["queued"], counts["complete"], counts["running"]) == (2, 1, 1, 0)
    assert set(counts) == {str(st) for st in TraceState}


def test_expire_due_honours_limit_and_a_moved_deadline(url: str) -> None:
    s = open_state(url)
    past = time.time() - 1
    s.create([make_record(f"t{i}", expires_at=past) for i in range(5)])
    s.update("t0", expires_at=time.time() + 60)  # the deadline moved out: not due any more
    first = s.expire_due(limit=2)
    rest = s.expire_due()
    assert len(first) == 2 and sorted(first + rest) == ["t1", "t2", "t3", "t4"]
    t0 = s.get("t0")
    assert t0 is not None and t0.state is TraceState.QUEUED


def test_backpressure_signal_is_shared(url: str) -> None:
    s = open_state(url)
    assert s.read_backpressure() is None
    s.publish_backpressure(BackpressureSignal(level=BackpressureLevel.HARD, reason="lag", updated_at=12.5))
    got = open_state(url).read_backpressure()
    assert got == BackpressureSignal(level=BackpressureLevel.HARD, reason="lag", updated_at=12.5)
