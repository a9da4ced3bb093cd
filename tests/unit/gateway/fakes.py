"""In-memory stores at the seam the gateway uses (hif.store.base protocols), with an outage switch."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from hif.errors import StoreUnavailableError
from hif.store.base import BackpressureSignal, Job, Lease, TraceRecord, TraceState


class Outage:
    def __init__(self) -> None:
        self.down = False

    def check(self) -> None:
        if self.down:
            raise StoreUnavailableError("fake store is down")


class FakeQueue:
    def __init__(self, outage: Outage | None = None) -> None:
        self.jobs: list[Job] = []
        self.outage = outage or Outage()
        self.lock = threading.Lock()

    def enqueue(self, jobs: Sequence[Job]) -> None:
        self.outage.check()
        with self.lock:
            self.jobs.extend(jobs)

    def lease(
        self, consumer: str, *, max_jobs: int, visibility_timeout_s: float, block_s: float = 0.0
    ) -> list[Lease]:
        return []

    def ack(self, lease: Lease) -> None: ...

    def extend(self, lease: Lease, visibility_timeout_s: float) -> Lease:
        return lease

    def heartbeat(self, consumer: str) -> None: ...

    def release(self, consumer: str) -> int:
        return 0

    def release_silent(self, silence_s: float, now: float | None = None) -> dict[str, int]:
        return {}

    def depth(self) -> int:
        return len(self.jobs)

    def oldest_age_s(self, now: float | None = None) -> float:
        self.outage.check()
        return 0.0

    def check(self) -> None:
        self.outage.check()

    def close(self) -> None: ...


class FakeTraceStore:
    def __init__(self, outage: Outage | None = None) -> None:
        self.records: dict[str, TraceRecord] = {}
        self.signal: BackpressureSignal | None = None
        self.outage = outage or Outage()
        self.create_calls = 0

    def create(self, records: Iterable[TraceRecord]) -> None:
        self.outage.check()
        self.create_calls += 1
        for record in records:
            if record.trace_id in self.records:
                raise AssertionError(f"duplicate create of {record.trace_id}")
            self.records[record.trace_id] = record

    def get(self, trace_id: str) -> TraceRecord | None:
        self.outage.check()
        return self.records.get(trace_id)

    def transition(
        self, trace_id: str, *, from_states: Iterable[TraceState], to_state: TraceState, **fields: Any
    ) -> TraceRecord | None:
        record = self.records.get(trace_id)
        if record is None or record.state not in set(from_states):
            return None
        record = dataclasses.replace(record, state=to_state, **fields)
        self.records[trace_id] = record
        return record

    def update(self, trace_id: str, **fields: Any) -> TraceRecord | None:
        return None

    def expire_due(self, now: float | None = None, *, limit: int = 1000) -> list[str]:
        return []

    def counts(self) -> dict[str, int]:
        return {}

    def publish_backpressure(self, signal: BackpressureSignal) -> None:
        self.signal = signal

    def read_backpressure(self) -> BackpressureSignal | None:
        self.outage.check()
        return self.signal

    def check(self) -> None:
        self.outage.check()

    def close(self) -> None: ...


class FakeBlobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.data[key] = data

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def exists(self, key: str) -> bool:
        return key in self.data

    def check(self) -> None:
        """Always usable."""

    def close(self) -> None: ...


@dataclasses.dataclass
class FakeStores:
    queue: FakeQueue
    state: FakeTraceStore
    blobs: FakeBlobs
    outage: Outage

    @classmethod
    def new(cls) -> FakeStores:
        outage = Outage()
        return cls(FakeQueue(outage), FakeTraceStore(outage), FakeBlobs(), outage)

    def close(self) -> None: ...


def async_test(fn: Any) -> Any:
    """Run an ``async def`` test in a fresh event loop (no async pytest plugin needed)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
