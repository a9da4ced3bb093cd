"""The Interceptor: turns a finished chat into a trace record and one explanation job.

The chat lane never waits on a store. :meth:`Interceptor.admit` is synchronous and O(1): it decides
``queued`` or ``shed``, appends the record (and job) to a bounded in-memory buffer and returns. A
background writer task drains the buffer in batches on its own thread (``TraceStore.create`` then
``JobQueue.enqueue``), retrying with backoff while the store is down. Status reads consult the
buffer first, so a trace the chat just returned is never a 404.

Shedding, in order: a fresh HARD backpressure signal (re-read every ``backpressure_refresh_s`` by
the writer task, never on the request path; older than ``backpressure_stale_s`` counts as none),
a store whose last write failed, a full buffer. A shed trace is still recorded so its status says
why, and so is one refused by its key's ``explain_rpm`` (state ``rate_limited``, never ``shed``).
A queued trace that outlives its TTL in the buffer is written as ``expired``: nothing is lost.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable

from hif.errors import StoreError
from hif.explainer.settings import SlaSettings
from hif.metrics import GatewayMetrics, TenantLabels
from hif.store.base import (
    BackpressureLevel,
    BackpressureSignal,
    Job,
    JobQueue,
    TraceRecord,
    TraceState,
    TraceStore,
)

log = logging.getLogger(__name__)
MEMORY_ONLY_RECORDS = 10_000  # shed records kept for status reads when even the buffer is full
MAX_BACKOFF_S = 2.0


@dataclasses.dataclass(slots=True)
class _Entry:
    record: TraceRecord
    job: Job | None
    created: bool = False  # the trace row is written; a retry only re-sends the job


def new_trace_id() -> str:
    return uuid.uuid4().hex


class Interceptor:
    def __init__(
        self,
        *,
        queue: JobQueue,
        state: TraceStore,
        sla: SlaSettings,
        metrics: GatewayMetrics,
        tenants: TenantLabels,
        buffer_jobs: int = 10_000,
        batch_jobs: int = 256,
        backpressure_refresh_s: float = 0.25,
        backpressure_stale_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue, self._state, self._sla = queue, state, sla
        self._metrics, self._tenants = metrics, tenants
        self._max, self._batch = buffer_jobs, batch_jobs
        self._refresh_s, self._stale_s = backpressure_refresh_s, backpressure_stale_s
        self._clock = clock
        self._buffer: collections.deque[_Entry] = collections.deque()
        self._pending: dict[str, TraceRecord] = {}
        self._memory: collections.OrderedDict[str, TraceRecord] = collections.OrderedDict()
        self._signal: BackpressureSignal | None = None
        self._signal_read_at = 0.0
        self.store_error: str | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # One writer thread keeps batches in order; reads get their own threads so a slow
        # write never delays a status poll.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hif-enqueue")
        self._readers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="hif-trace-read")

    # --- the chat lane ---------------------------------------------------------------------------

    @property
    def level(self) -> BackpressureLevel:
        signal = self._signal
        if signal is None or signal.stale(self._clock(), self._stale_s):
            return BackpressureLevel.NONE
        return signal.level

    def admit(
        self,
        *,
        trace_id: str,
        tenant: str,
        granularity: str,
        features_requested: str,
        features_resolved: str,
        prompt: str,
        completion: str,
        rate_limited: str | None = None,
    ) -> TraceRecord:
        """Record the explanation request; returns the trace as the chat response reports it.

        ``rate_limited`` (the key's ``explain_rpm`` was spent; the reason) records the trace as
        ``rate_limited`` with no job: the tenant's own limit, not sidecar overload.
        """
        now = self._clock()
        reason: str | None
        if rate_limited is not None:
            outcome, reason, state = "rate_limited", rate_limited, TraceState.RATE_LIMITED
        else:
            outcome, reason = self._decide()
            state = TraceState.QUEUED if reason is None else TraceState.SHED
        record = TraceRecord(
            trace_id=trace_id,
            tenant=tenant,
            state=state,
            granularity_requested=granularity,
            granularity=granularity,
            features_requested=features_requested,
            features_resolved=features_resolved,
            created_at=now,
            updated_at=now,
            expires_at=now + self._sla.trace_ttl_s,
            reason=reason,
        )
        job = (
            None
            if reason
            else Job(
                trace_id=trace_id,
                tenant=tenant,
                granularity=granularity,
                featureset=features_resolved,
                prompt=prompt,
                completion=completion,
                created_at=now,
                expires_at=record.expires_at,
                budget_s=self._sla.budget_s(granularity),
            )
        )
        if len(self._buffer) < self._max:
            self._buffer.append(_Entry(record, job))
            self._pending[trace_id] = record
            self._wake.set()
        else:
            self._remember(record)
        self._metrics.enqueue_buffer.set(len(self._buffer))
        self._metrics.admissions.labels(outcome, granularity, self._tenants.label(tenant)).inc()
        return record

    def _decide(self) -> tuple[str, str | None]:
        """(outcome label, shed reason or None)."""
        signal = self._signal
        if self.level is BackpressureLevel.HARD and signal is not None:
            return "shed", f"backpressure hard: {signal.reason}"
        if self.store_error is not None:
            return "store_error", f"store unavailable: {self.store_error}"
        if len(self._buffer) >= self._max:
            return "shed", f"enqueue buffer full ({self._max} jobs waiting for the store)"
        return "admitted", None

    def _remember(self, record: TraceRecord) -> None:
        self._memory[record.trace_id] = record
        while len(self._memory) > MEMORY_ONLY_RECORDS:
            self._memory.popitem(last=False)

    # --- trace reads -----------------------------------------------------------------------------

    async def lookup(self, trace_id: str) -> TraceRecord | None:
        """The trace from the buffer if it is still there, else from the store."""
        record = self._pending.get(trace_id) or self._memory.get(trace_id)
        if record is not None:
            return record
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._state.get, trace_id)

    async def run_read(self, fn: Callable[[], object]) -> object:
        """Run a blocking store read on the reader threads."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # --- the writer task -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="hif-enqueue-writer")

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Flush the buffer (retrying a down store until ``timeout_s``), then stop the writer."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                log.error(
                    "enqueue buffer not flushed within %.1fs: %d traces lost (%s)",
                    timeout_s,
                    len(self._buffer),
                    self.store_error,
                )
        self._writer.shutdown(wait=True)

    def close(self) -> None:
        """Release the reader threads (after :meth:`stop`, once no request can read any more)."""
        self._readers.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._buffer:
                if self._stopping:
                    return
                with contextlib.suppress(TimeoutError):  # a timeout is the periodic signal refresh
                    await asyncio.wait_for(self._wake.wait(), self._refresh_s)
                self._wake.clear()
            if self._clock() - self._signal_read_at >= self._refresh_s:
                await self._refresh_signal()
            if not self._buffer:
                continue
            if await self._write_batch():
                failures = 0
            else:
                failures += 1
                await asyncio.sleep(min(MAX_BACKOFF_S, 0.05 * 2**failures))  # store down: back off

    async def _refresh_signal(self) -> None:
        self._signal_read_at = self._clock()
        try:
            loop = asyncio.get_running_loop()
            self._signal = await loop.run_in_executor(self._writer, self._state.read_backpressure)
        except StoreError as exc:
            log.debug("backpressure read failed: %s", exc)
        self._metrics.backpressure_level.set(int(self.level))

    async def _write_batch(self) -> bool:
        batch = [self._buffer.popleft() for _ in range(min(self._batch, len(self._buffer)))]
        self._expire_stale(batch)
        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._write_sync, batch)
        except StoreError as exc:
            if self.store_error is None:
                log.warning("store write failed, buffering explanation jobs: %s", exc)
            self.store_error = str(exc)
            self._buffer.extendleft(reversed(batch))  # keep order for the retry
            return False
        except Exception as exc:  # a backend bug must not kill the writer and strand the buffer
            log.exception("unexpected store failure; retrying")
            self.store_error = repr(exc)
            self._buffer.extendleft(reversed(batch))
            return False
        if self.store_error is not None:
            log.warning("store reachable again; %d jobs still buffered", len(self._buffer))
        self.store_error = None
        for entry in batch:
            self._pending.pop(entry.record.trace_id, None)
        self._metrics.enqueue_buffer.set(len(self._buffer))
        return True

    def _expire_stale(self, batch: list[_Entry]) -> None:
        now = self._clock()
        for entry in batch:
            if entry.job is not None and not entry.created and entry.record.expires_at <= now:
                entry.record = dataclasses.replace(
                    entry.record,
                    state=TraceState.EXPIRED,
                    updated_at=now,
                    reason="expired in the gateway's enqueue buffer while the store was unavailable",
                )
                entry.job = None
                self._pending[entry.record.trace_id] = entry.record

    def _write_sync(self, batch: list[_Entry]) -> None:
        todo = [e for e in batch if not e.created]
        if todo:
            self._state.create([e.record for e in todo])
            for entry in todo:
                entry.created = True
        jobs = [e.job for e in batch if e.job is not None]
        if jobs:
            self._queue.enqueue(jobs)
            for entry in batch:
                entry.job = None  # sent: a later failure in this batch must not send it twice
