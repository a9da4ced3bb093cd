from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from hif.explainer.settings import SlaSettings
from hif.gateway.interceptor import Interceptor
from hif.metrics import GatewayMetrics, TenantLabels
from hif.store.base import BackpressureLevel, BackpressureSignal, TraceState
from tests.unit.gateway.fakes import FakeStores, async_test


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(stores: FakeStores, clock: Clock | None = None, **kw: Any) -> tuple[Interceptor, CollectorRegistry]:
    registry = CollectorRegistry()
    interceptor = Interceptor(
        queue=stores.queue,
        state=stores.state,
        sla=SlaSettings(trace_ttl_s=60, token_budget_s=3.5),
        metrics=GatewayMetrics(registry),
        tenants=TenantLabels(),
        clock=clock or Clock(),
        backpressure_refresh_s=0.01,
        **kw,
    )
    return interceptor, registry


def admit(interceptor: Interceptor, trace_id: str, granularity: str = "sentence") -> Any:
    return interceptor.admit(
        trace_id=trace_id,
        tenant="alpha",
        granularity=granularity,
        features_requested="fs",
        features_resolved="fs",
        prompt="user: hi",
        completion="Hello.",
    )


async def drain(interceptor: Interceptor, stores: FakeStores, n: int) -> None:
    for _ in range(200):
        if len(stores.queue.jobs) >= n and interceptor.buffered == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"writer did not flush {n} jobs")


def admissions(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value(
        "gateway_explanation_admissions_total",
        {"outcome": outcome, "granularity": "sentence", "tenant": "alpha"},
    )
    return value or 0.0


@async_test
async def test_admit_queues_record_and_job_then_writer_persists() -> None:
    stores = FakeStores.new()
    interceptor, _ = make(stores)
    record = admit(interceptor, "t1", "token")
    assert record.state is TraceState.QUEUED
    assert record.expires_at == 1060.0
    # Before the writer runs, the status comes from memory: no 404 race.
    assert (await interceptor.lookup("t1")) == record
    assert stores.state.records == {}
    interceptor.start()
    await drain(interceptor, stores, 1)
    job = stores.queue.jobs[0]
    assert (job.trace_id, job.granularity, job.budget_s, job.completion) == ("t1", "token", 3.5, "Hello.")
    assert stores.state.records["t1"].state is TraceState.QUEUED
    assert (await interceptor.lookup("t1")) == stores.state.records["t1"]
    await interceptor.stop(1)


@async_test
async def test_hard_backpressure_sheds_with_reason() -> None:
    stores, clock = FakeStores.new(), Clock()
    stores.state.signal = BackpressureSignal(
        level=BackpressureLevel.HARD, reason="queue lag 9s", updated_at=clock.now
    )
    interceptor, registry = make(stores, clock)
    interceptor.start()
    await asyncio.sleep(0.05)  # the writer task reads the signal off the request path
    record = admit(interceptor, "t1")
    assert record.state is TraceState.SHED
    assert "queue lag 9s" in (record.reason or "")
    assert admissions(registry, "shed") == 1
    await interceptor.stop(1)
    assert stores.queue.jobs == []
    assert stores.state.records["t1"].state is TraceState.SHED


@async_test
async def test_stale_hard_signal_counts_as_none() -> None:
    stores, clock = FakeStores.new(), Clock()
    stores.state.signal = BackpressureSignal(
        level=BackpressureLevel.HARD, reason="old", updated_at=clock.now - 60
    )
    interceptor, registry = make(stores, clock)
    interceptor.start()
    await asyncio.sleep(0.05)
    assert admit(interceptor, "t1").state is TraceState.QUEUED
    assert admissions(registry, "admitted") == 1
    await interceptor.stop(1)


@async_test
async def test_store_down_buffers_then_recovers_without_loss() -> None:
    stores = FakeStores.new()
    stores.outage.down = True
    interceptor, registry = make(stores)
    interceptor.start()
    assert admit(interceptor, "t1").state is TraceState.QUEUED
    for _ in range(100):
        if interceptor.store_error:
            break
        await asyncio.sleep(0.01)
    assert interceptor.store_error
    shed = admit(interceptor, "t2")  # the store is known down: the chat still answers, shed with why
    assert shed.state is TraceState.SHED and "store unavailable" in (shed.reason or "")
    assert admissions(registry, "store_error") == 1
    assert (await interceptor.lookup("t1")).state is TraceState.QUEUED  # served from memory
    stores.outage.down = False
    await drain(interceptor, stores, 1)
    await interceptor.stop(1)
    assert [j.trace_id for j in stores.queue.jobs] == ["t1"]
    assert stores.state.records["t2"].state is TraceState.SHED
    assert interceptor.store_error is None


@async_test
async def test_full_buffer_sheds_and_still_answers_status() -> None:
    stores = FakeStores.new()
    interceptor, registry = make(stores, buffer_jobs=2)
    states = [admit(interceptor, f"t{i}").state for i in range(3)]
    assert states == [TraceState.QUEUED, TraceState.QUEUED, TraceState.SHED]
    assert (await interceptor.lookup("t2")).reason.startswith("enqueue buffer full")
    assert registry.get_sample_value("gateway_enqueue_buffer_jobs") == 2


@async_test
async def test_job_that_outlives_ttl_in_buffer_is_written_expired() -> None:
    stores, clock = FakeStores.new(), Clock()
    interceptor, _ = make(stores, clock)
    admit(interceptor, "t1")
    clock.now += 61
    interceptor.start()
    for _ in range(100):
        if "t1" in stores.state.records:
            break
        await asyncio.sleep(0.01)
    await interceptor.stop(1)
    assert stores.state.records["t1"].state is TraceState.EXPIRED
    assert stores.queue.jobs == []


@async_test
async def test_enqueue_failure_after_create_does_not_recreate() -> None:
    stores = FakeStores.new()
    interceptor, _ = make(stores)
    calls = {"n": 0}
    real_enqueue = stores.queue.enqueue

    def flaky(jobs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            from hif.errors import StoreUnavailableError

            raise StoreUnavailableError("blip")
        real_enqueue(jobs)

    stores.queue.enqueue = flaky  # type: ignore[method-assign]
    admit(interceptor, "t1")
    interceptor.start()
    await drain(interceptor, stores, 1)
    await interceptor.stop(1)
    assert stores.state.create_calls == 1  # the fake raises on a duplicate create
    assert len(stores.queue.jobs) == 1
