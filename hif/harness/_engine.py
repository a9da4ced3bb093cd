"""One process's load run: workers, the pacer, the ticker, and the files they feed.

Closed loop: ``concurrency`` workers each send, wait for the answer, send again; with
``--rps-limit`` they take slots from one shared :class:`TokenBucket`. Open loop
(``--arrival-rate``): a dispatcher puts schedule slots on a queue and idle workers take them;
a slot older than the request timeout when a worker reaches it is ``dropped``.
Attached chats spawn one poll task per trace on a separate pool of connections, so polling
never queues behind chat traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

from hif.chaos import ChaosReader
from hif.errors import LoadClientError
from hif.harness import records
from hif.harness._live import LiveView
from hif.harness._pacing import TokenBucket, arrivals
from hif.harness._polling import Poller
from hif.harness._preflight import preflight
from hif.harness._requests import ChatRequests
from hif.harness._results import ResultFiles, copy_chaos_events, write_summary
from hif.harness._summary import build_summary
from hif.harness._tally import CHAT_INTENDED, CHAT_SERVICE, LOOP_LAG, SEND_LAG, Bucket, Tally
from hif.harness.client import HttpClient
from hif.harness.load import LoadSettings, LoadSummary, TickCallback, local_share
from hif.harness.stats import Interval, IntervalRecorder

TICK_S = 0.1
STOP_DRAIN_S = 5.0  # open polls' grace after a stop (SIGINT), instead of --drain-seconds
CONNECT_BACKOFF_S = (0.05, 1.0)  # first and largest pause after a refused connection
_STATUS_KEYS = {code: f"status:{code}" for code in range(600)}  # no string building per request


class Engine:
    def __init__(
        self,
        settings: LoadSettings,
        *,
        stop: asyncio.Event | None = None,
        on_tick: TickCallback | None = None,
        t0_s: float | None = None,
    ) -> None:
        self.s = settings
        self.stop = stop or asyncio.Event()
        self.on_tick = on_tick
        self._t0_s = t0_s  # a parent process aligns its children's buckets by passing one start
        self.share = local_share(settings)
        self.requests = ChatRequests(settings)
        self._chaos = ChaosReader()
        self.chaos_flags: list[str] = []
        self._stopping = False
        self._issued = 0
        self._idle: set[asyncio.Task[Any]] = set()
        self.stopped_by = "duration"
        self.load_ended_s: float | None = None  # wall time the load stopped (polls may drain on)

    def client(self) -> HttpClient:
        return HttpClient(self.s.base_url, timeout_s=self.s.timeout_seconds, headers=self.requests.headers)

    # --- the run --------------------------------------------------------------------------
    async def run(self) -> LoadSummary:
        s = self.s
        probe = self.client()
        try:
            await preflight(probe, base_url=s.base_url, features=s.features if s.attach_rate > 0 else None)
        finally:
            await probe.close()
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.files = ResultFiles(s.results_dir, append=s.append)
        self.started_s = time.time()
        self.offset_s = self.started_s - time.monotonic()  # wall = monotonic + offset
        self.run_id = s.run_id or time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.started_s))
        grid = self.started_s if self._t0_s is None else self._t0_s  # bucket boundaries
        first = grid + ((self.started_s - grid) // s.bucket_seconds) * s.bucket_seconds
        self.recorder = IntervalRecorder(first)
        self.tally = Tally(grid, s.bucket_seconds)
        self.cur = Bucket(first, first + s.bucket_seconds)
        self.poller = Poller(self)
        self.live = LiveView(s.live, self)
        self.chaos_flags = sorted(self._chaos.active())
        self._ticker_task = asyncio.ensure_future(self._ticker())
        try:
            await self._offer_load()
            self.load_ended_s = self.wall(time.monotonic())
            # After Ctrl-C (or a caller's stop) open polls get a short grace, not the full drain.
            stopped = self.stopped_by == "stop"
            await self.poller.drain(min(s.drain_seconds, STOP_DRAIN_S) if stopped else s.drain_seconds)
        finally:
            self._ticker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker_task
            ended_s = self.ended_s = self.wall(time.monotonic())
            self._close_bucket(ended_s, final=True)
            self.live.close()
            self.files.close()
        copy_chaos_events(s.results_dir, self.started_s, ended_s)
        meta = {
            "run_id": self.run_id,
            "stopped_by": self.stopped_by,
            "share": self.share,
            "load_ended_s": self.load_ended_s or ended_s,
        }
        summary = build_summary(self.tally, s, started_s=self.started_s, ended_s=ended_s, meta=meta)
        write_summary(s.results_dir, summary)
        return LoadSummary(summary)

    async def _offer_load(self) -> None:
        s = self.s
        if s.open_loop:
            self.queue: asyncio.Queue[float] = asyncio.Queue()
            tasks = [asyncio.ensure_future(self._open_worker(i)) for i in range(self.share.workers)]
            tasks.append(asyncio.ensure_future(self._dispatcher()))
        else:
            rate = self.share.rps_limit
            self.bucket = TokenBucket(rate, max_backlog_s=s.timeout_seconds) if rate else None
            tasks = [asyncio.ensure_future(self._closed_worker(i)) for i in range(self.share.workers)]
        deadline = time.monotonic() + s.duration_seconds
        stop_wait = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait([stop_wait], timeout=max(deadline - time.monotonic(), 0))
        if self.stop.is_set() and self.stopped_by == "duration":
            self.stopped_by = "stop"
        stop_wait.cancel()
        self._stopping = True
        if s.open_loop:
            await self._send_queued(s.timeout_seconds)
        for task in list(self._idle):
            task.cancel()  # workers between requests; those mid-request finish it (bounded by timeout)
        await asyncio.gather(*tasks, return_exceptions=True)
        if s.open_loop:
            self._drop_unsent()

    def wall(self, mono: float) -> float:
        return mono + self.offset_s

    def _take(self) -> bool:
        """Count one more chat; False (and stop) once ``max_requests`` is reached."""
        if self._stopping or (self.share.max_requests and self._issued >= self.share.max_requests):
            if not self._stopping:
                self.stopped_by = "max_requests"
                self.stop.set()
            return False
        self._issued += 1
        return True

    # --- workers --------------------------------------------------------------------------
    async def _closed_worker(self, index: int) -> None:
        client, rng = self.client(), self.requests.rng(index)
        me = asyncio.current_task()
        assert me is not None
        backoff = 0.0
        try:
            while not self._stopping:
                now = time.monotonic()
                intended = self.bucket.reserve(now) if self.bucket else now
                ready = now
                if intended > now:
                    await self._idle_sleep(me, intended - now)
                if not self._take():
                    break
                backoff = await self._backoff(me, await self.chat(client, rng, intended, ready), backoff)
        except asyncio.CancelledError:
            pass
        finally:
            await client.close()

    async def _dispatcher(self) -> None:
        for slot in arrivals(self.share.arrival_rate, time.monotonic(), self.s.arrival, self.s.seed):
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._take():
                return
            self.queue.put_nowait(slot)

    async def _open_worker(self, index: int) -> None:
        client, rng = self.client(), self.requests.rng(index)
        me = asyncio.current_task()
        assert me is not None
        backoff = 0.0
        try:
            while not (self._stopping and self.queue.empty()):
                self._idle.add(me)
                ready = time.monotonic()
                try:
                    slot = await self.queue.get()
                finally:
                    self._idle.discard(me)
                if time.monotonic() - slot > self.s.timeout_seconds:
                    self._record_dropped(slot, "waited longer than the request timeout for a free worker")
                    continue
                backoff = await self._backoff(me, await self.chat(client, rng, slot, ready), backoff)
        except asyncio.CancelledError:
            pass
        finally:
            await client.close()

    async def _idle_sleep(self, me: asyncio.Task[Any], seconds: float) -> None:
        """Sleep where a stop may cancel us (between requests, never mid-request)."""
        self._idle.add(me)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._idle.discard(me)

    async def _backoff(self, me: asyncio.Task[Any], error_class: str | None, backoff: float) -> float:
        """After a refused connect, wait (doubling to a bound): a dead gateway gets no busy loop."""
        if error_class != "connect":
            return 0.0
        backoff = min(backoff * 2 or CONNECT_BACKOFF_S[0], CONNECT_BACKOFF_S[1])
        await self._idle_sleep(me, backoff)
        return backoff

    async def _send_queued(self, limit_s: float) -> None:
        """Open loop at the end: slots already offered are still sent, for at most ``limit_s``."""
        deadline = time.monotonic() + limit_s
        while not self.queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _drop_unsent(self) -> None:
        while not self.queue.empty():
            self._record_dropped(self.queue.get_nowait(), "run ended before a worker was free")

    # --- one chat -------------------------------------------------------------------------
    async def chat(self, client: HttpClient, rng: random.Random, intended: float, ready: float) -> str | None:
        """One chat; ``ready`` is when the worker became free (send lag = the generator's own delay)."""
        attached, granularity, data = self.requests.draw(rng)
        flags = self.chaos_flags
        sent = time.monotonic()
        self.recorder.record(SEND_LAG, (sent - max(intended, ready)) * 1000.0)
        status, error_class, error, answer = 0, None, None, None
        try:
            resp = await client.send(data)
            status = resp.status
            if status >= 400:
                error_class = "http_4xx" if status < 500 else "http_5xx"
                error = _error_text(resp.body)
            elif attached:
                answer = resp.json()
        except LoadClientError as exc:
            error_class, error = exc.error_class, str(exc)
        done = time.monotonic()
        service_ms, intended_ms = (done - sent) * 1000.0, (done - intended) * 1000.0
        self.recorder.record(CHAT_SERVICE, service_ms)
        self.recorder.record(CHAT_INTENDED, intended_ms)
        late = (sent - intended) * 1000.0 > self.s.late_ms
        counts = self.cur.counts
        counts["requests"] += 1
        counts[_STATUS_KEYS.get(status) or f"status:{status}"] += 1
        if error_class is None:
            counts["ok"] += 1
        else:
            counts[f"class:{error_class}"] += 1
        if late:
            counts["late"] += 1
        trace_id, state = None, None
        if attached:
            counts["attached"] += 1
            if error_class is None:
                trace_id, state = self.poller.admit(answer, granularity, done, flags)
        self.files.chat_line(
            {
                "v": records.CHAT_SCHEMA,
                "ts": self.wall(sent),
                "intended_ts": self.wall(intended),
                "latency_ms": service_ms,
                "intended_latency_ms": intended_ms,
                "status": status,
                "error_class": error_class,
                "error": error,
                "tenant": self.s.tenant_id,
                "attached": attached,
                "granularity": granularity if attached else None,
                "trace_id": trace_id,
                "explanation_state": state,
                "chaos": flags,
                "shard": self.s.shard,
                "late": late,
                "run": self.run_id,
            }
        )
        return error_class

    def _record_dropped(self, slot: float, why: str) -> None:
        counts = self.cur.counts
        counts["requests"] += 1
        counts["status:0"] += 1
        counts["class:dropped"] += 1
        self.files.chat_line(
            {
                "v": records.CHAT_SCHEMA,
                "ts": None,
                "intended_ts": self.wall(slot),
                "latency_ms": None,
                "intended_latency_ms": None,
                "status": 0,
                "error_class": "dropped",
                "error": why,
                "tenant": self.s.tenant_id,
                "attached": False,
                "granularity": None,
                "trace_id": None,
                "explanation_state": None,
                "chaos": self.chaos_flags,
                "shard": self.s.shard,
                "late": True,
                "run": self.run_id,
            }
        )

    # --- the ticker: loop lag, chaos flags, buckets ---------------------------------------
    async def _ticker(self) -> None:
        while True:
            expected = time.monotonic() + TICK_S
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.recorder.record(LOOP_LAG, max(now - expected, 0.0) * 1000.0)
            self.chaos_flags = sorted(self._chaos.active())
            while self.wall(now) >= self.cur.end_s:
                self._close_bucket(self.cur.end_s)

    def _close_bucket(self, end_s: float, *, final: bool = False) -> None:
        bucket = self.cur
        bucket.end_s = end_s if final else bucket.end_s
        intervals = [
            Interval(iv.tag, bucket.start_s, bucket.end_s, iv.histogram)
            for iv in self.recorder.rotate(bucket.end_s)
        ]
        self.files.intervals(intervals)
        self.tally.close_bucket(bucket, intervals)
        index = round((bucket.start_s - self.tally.t0_s) / self.s.bucket_seconds)
        self.tally.buckets[index] = bucket
        self.files.flush()
        view = bucket.view()
        view["run"] = self.run_id
        self.live.update(view)
        if self.on_tick is not None:
            _safe_call(self.on_tick, view)
        phase = "drain" if self.load_ended_s is not None else "load"
        self.cur = Bucket(bucket.end_s, bucket.end_s + self.s.bucket_seconds, phase)


def _safe_call(fn: Callable[[dict[str, Any]], None], view: dict[str, Any]) -> None:
    try:
        fn(view)
    except Exception:  # a caller's callback must never stop the run
        import logging

        logging.getLogger(__name__).exception("on_tick callback failed")


def _error_text(body: bytes) -> str:
    """The OpenAI envelope's message when there is one, else the start of the body."""
    try:
        import orjson

        data = orjson.loads(body)
        message = data["error"]["message"]
        return str(message)[:300]
    except Exception:
        return body[:300].decode("utf-8", "replace")
