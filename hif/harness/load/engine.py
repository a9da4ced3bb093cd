"""One process's load run: workers, the pacer, the ticker, and the files they feed.

The workers live in the callback-driven chat lane (``load/lane.py``). Closed loop: ``concurrency``
workers each send, wait for the answer, send again; with ``--rps-limit`` they take slots from one
shared :class:`TokenBucket`. Open loop (``--arrival-rate``): a dispatcher hands schedule slots to
idle workers, or queues them; a slot older than the request timeout when a worker reaches it is
``dropped``. Attached chats spawn one poll task per trace on a separate pool of connections, so
polling never queues behind chat traffic.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any, cast

import orjson

from hif.chaos import ChaosReader
from hif.harness import records
from hif.harness.client import HttpClient
from hif.harness.goodput import GoodputTargets, Ledger
from hif.harness.load.lane import Lane, Worker
from hif.harness.load.live import LiveView
from hif.harness.load.pacing import TokenBucket, arrivals
from hif.harness.load.polling import Poller
from hif.harness.load.preflight import check_run
from hif.harness.load.requests import ChatRequests
from hif.harness.load.results import ResultFiles, copy_chaos_events, write_summary
from hif.harness.load.settings import LoadSettings, local_share
from hif.harness.load.stream import (
    MARK_TAGS,
    STREAM_FIELDS,
    StreamBook,
)
from hif.harness.load.summary import LoadSummary, TickCallback, build_summary
from hif.harness.load.tally import (
    CHAT_INTENDED,
    CHAT_SERVICE,
    LOOP_LAG,
    POLL,
    SEND_LAG,
    SLA_BOUND,
    SLA_SENTENCE,
    SLA_TOKEN,
    Bucket,
    Tally,
)
from hif.harness.prometheus import Scraper
from hif.harness.records import ChatRecord, ErrorClass, ExplanationRecord, Granularity
from hif.harness.stats import Interval, IntervalRecorder

TICK_S = 0.1
STOP_DRAIN_S = 5.0  # open polls' grace after a stop (SIGINT), instead of --drain-seconds
_STATUS_KEYS = {code: f"status:{code}" for code in range(600)}  # no string building per request


class Engine:
    def __init__(
        self,
        settings: LoadSettings,
        *,
        stop: asyncio.Event | None = None,
        on_tick: TickCallback | None = None,
        on_bucket: Callable[[Bucket, int, list[str]], None] | None = None,
        t0_s: float | None = None,
    ) -> None:
        self.s = settings
        self.stop = stop or asyncio.Event()
        self.on_tick = on_tick
        self.on_bucket = on_bucket  # a --processes child sends each bucket to its parent
        self._t0_s = t0_s  # a parent process aligns its children's buckets by passing one start
        self.share = local_share(settings)
        self.requests = ChatRequests(settings.request_mix())
        self.book: StreamBook | None = None
        if settings.stream:
            from hif.tokens import load_tokenizer

            tokenizer = load_tokenizer(settings.tokenizer)
            self.book = StreamBook(tokenizer, self.requests.prompt_token_counts(tokenizer))
        self._chaos = ChaosReader()
        self.chaos_flags: list[str] = []
        self._stopping = False
        self._issued = 0
        self._max_requests = self.share.max_requests
        self.stopped_by = "duration"
        self.load_ended_s: float | None = None  # wall time the load stopped (polls may drain on)
        self.featureset: dict[str, Any] | None = None
        # goodput by hif.harness.goodput's definition, against the run's gates (else the reference)
        self.goodput = Ledger(GoodputTargets.from_slos(settings.slos))

    def client(self) -> HttpClient:
        return HttpClient(self.s.base_url, timeout_s=self.s.timeout_seconds, headers=self.requests.headers)

    # --- the run --------------------------------------------------------------------------
    def begin(self) -> None:
        """Open the result files, fix the clocks and start the tallies (``run`` does this after
        its pre-flight; bench/hotpath.py does it to drive the lane over a fake transport)."""
        s = self.s
        self.files = ResultFiles(s.results_dir, append=s.append, keep=s.keep_files)
        self.started_s = time.time()
        self.offset_s = self.started_s - time.monotonic()  # wall = monotonic + offset
        self.run_id = s.run_id or time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.started_s))
        grid = self.started_s if self._t0_s is None else self._t0_s  # bucket boundaries
        first = grid + ((self.started_s - grid) // s.bucket_seconds) * s.bucket_seconds
        self.recorder = IntervalRecorder(first)
        self.tally = Tally(grid, s.bucket_seconds)
        self.cur = Bucket(first, first + s.bucket_seconds)
        self.lane: Lane | None = None
        self._late_s = s.late_ms / 1000.0
        self._write = self.files.chat.write
        self._bind_hot()
        self.poller = Poller(
            s.poll_policy(), self, self.client, self.share.workers if s.attach_rate > 0 else 0
        )
        self.live = LiveView(
            s.live,
            title=f"hif load {self.run_id} (last {s.bucket_seconds:g} s)",
            duration_s=s.duration_seconds,
        )
        self.chaos_flags = sorted(self._chaos.active())
        self._set_templates()

    async def run(self) -> LoadSummary:
        s = self.s
        self.featureset = await check_run(s)
        if self.featureset and self.featureset["used"] != self.requests.s.features:
            self.requests = ChatRequests(
                dataclasses.replace(s.request_mix(), features=self.featureset["used"])
            )
        self.begin()
        scraper = Scraper(s.metrics_urls(), s.results_dir / records.METRICS_FILE)
        await scraper.start()
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
            await scraper.stop()
        copy_chaos_events(s.results_dir, self.started_s, ended_s)
        meta = {
            "run_id": self.run_id,
            "stopped_by": self.stopped_by,
            "share": self.share,
            "load_ended_s": self.load_ended_s or ended_s,
            "featureset": self.featureset,
            "metrics": scraper.describe(),
        }
        summary = build_summary(self.tally, s, started_s=self.started_s, ended_s=ended_s, meta=meta)
        write_summary(s.results_dir, summary)
        return LoadSummary(summary)

    async def _offer_load(self) -> None:
        s = self.s
        rate = self.share.rps_limit
        probe = HttpClient(s.base_url)
        self.lane = lane = Lane(
            requests=self.requests,
            out=self,
            workers=self.share.workers,
            host=probe.host,
            port=probe.port,
            timeout_s=s.timeout_seconds,
            send_lag=self._send_lag,
            bucket=TokenBucket(rate, max_backlog_s=s.timeout_seconds) if rate and not s.open_loop else None,
            open_loop=s.open_loop,
            stream=s.stream,
            new_reader=self.book.new_reader if self.book is not None else None,
        )
        lane.start()
        dispatcher = asyncio.ensure_future(self._dispatcher(lane)) if s.open_loop else None
        deadline = time.monotonic() + s.duration_seconds
        stop_wait = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait([stop_wait], timeout=max(deadline - time.monotonic(), 0))
        if self.stop.is_set() and self.stopped_by == "duration":
            self.stopped_by = "stop"
        stop_wait.cancel()
        self._stopping = True
        if dispatcher is not None:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher
        await lane.stop(queued_grace_s=s.timeout_seconds)

    def wall(self, mono: float) -> float:
        return mono + self.offset_s

    def take(self) -> bool:
        """Count one more chat; False (and stop) once ``max_requests`` is reached."""
        if self._stopping or (self._max_requests and self._issued >= self._max_requests):
            if not self._stopping:
                self.stopped_by = "max_requests"
                self.stop.set()
            return False
        self._issued += 1
        return True

    async def _dispatcher(self, lane: Lane) -> None:
        """Open loop: each schedule slot goes to the lane, however busy the server is."""
        for slot in arrivals(self.share.arrival_rate, time.monotonic(), self.s.arrival, self.s.seed):
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.take():
                return
            lane.offer(slot)

    # --- one chat -------------------------------------------------------------------------
    # The lane calls chat_done from inside data_received, once per request: the common case (an
    # answer below 400, not attached, on time) costs three list appends, five dict stores and one
    # orjson call. Counters for it are folded into the bucket once per bucket (_fold_hot).
    def chat_done(
        self, w: Worker, status: int, error_class: str | None, error: str | None, body: bytes
    ) -> None:
        """Record one chat's outcome."""
        done = time.monotonic()
        if self.book is not None:
            self._stream_done(w, status, error_class, error, body, done)
            return
        sent, intended = w.sent, w.intended
        service_ms = (done - sent) * 1000.0
        intended_ms = (done - intended) * 1000.0
        self._service(service_ms)
        self._intended(intended_ms)
        self._statuses(status)
        if service_ms <= self._good_ms and error_class is None and 200 <= status < 300 and not w.attached:
            self._good += 1
        # The common case fills the one template dict in place (it is serialised at once and
        # kept by nobody); the rarer cases get a copy, so the template keeps its defaults.
        line = self._line
        if error_class is not None or w.attached or sent - intended > self._late_s:
            line = line.copy()
            self._chat_details(line, w, status, error_class, error, body, done)
        offset = self.offset_s
        line["ts"] = sent + offset
        line["intended_ts"] = intended + offset
        line["latency_ms"] = service_ms
        line["intended_latency_ms"] = intended_ms
        line["status"] = status
        self._write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))

    def _stream_done(
        self, w: Worker, status: int, error_class: str | None, error: str | None, body: bytes, done: float
    ) -> None:
        """A streamed chat: latencies end at the last content event; the line waits for the token
        pass (:class:`~hif.harness.load.stream.StreamBook`), which writes it."""
        st = w.stream
        book = self.book
        assert st is not None and book is not None
        sent, intended = w.sent, w.intended
        # As chat_done: the common case fills the one stream template in place and, once the
        # reader counted the stream's tokens, writes it at once (StreamBook.finish); a stream
        # that waits for the token pass keeps a copy.
        line = self._sline
        end = st.stamp(line, sent, intended, done, self._stream_marks)
        self._streams += 1
        service_ms, intended_ms = (end - sent) * 1000.0, (end - intended) * 1000.0
        self._service(service_ms)
        self._intended(intended_ms)
        self._statuses(status)
        if service_ms <= self._good_ms and error_class is None and 200 <= status < 300 and not w.attached:
            self._good += 1
        if error_class is not None or w.attached or sent - intended > self._late_s:
            line = line.copy()
            # The SLA clock of an attached stream starts at its last content event.
            self._chat_details(cast(ChatRecord, line), w, status, error_class, error, body, end)
        offset = self.offset_s
        line["ts"], line["intended_ts"] = sent + offset, intended + offset
        line["latency_ms"], line["intended_latency_ms"] = service_ms, intended_ms
        line["status"] = status
        if not book.finish(line, st, w.data, self._write_line):
            book.add(line.copy() if line is self._sline else line, st, w.data)

    def settle_streams(self) -> None:
        """The token pass over streams finished since the last one (ticker turn, bucket close)."""
        if self.book is not None:
            self.book.settle(self.recorder, self.cur.counts, self.files.chat_line)

    def _write_line(self, line: dict[str, Any]) -> None:
        self._write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))

    def _chat_details(
        self,
        line: ChatRecord,
        w: Worker,
        status: int,
        error_class: str | None,
        error: str | None,
        body: bytes,
        done: float,
    ) -> None:
        """The rarer parts of a chat record: late, attached (its trace), errors."""
        counts = self.cur.counts
        if w.sent - w.intended > self._late_s:
            counts["late"] += 1
            line["late"] = True
        if w.attached:
            counts["attached"] += 1
            line["attached"], line["granularity"] = True, cast(Granularity, w.granularity)
            if error_class is None:
                try:
                    answer = orjson.loads(body)
                except orjson.JSONDecodeError:
                    error_class, error = "protocol", f"answer is not JSON: {body[:80]!r}"
                else:
                    trace_id, state = self.poller.admit(answer, w.granularity, done, line["chaos"])
                    line["trace_id"], line["explanation_state"] = trace_id, state
                    chat_ok = 200 <= status < 300 and (done - w.sent) * 1000.0 <= self._good_ms
                    if self.goodput.attached(trace_id, chat_ok=chat_ok):
                        counts["good"] += 1
        if error_class is not None:
            counts[f"class:{error_class}"] += 1
            self._errors += 1
            line["error_class"], line["error"] = cast(ErrorClass, error_class), error

    def _bind_hot(self) -> None:
        """Point the hot path at this interval's histograms and a fresh per-bucket status list."""
        rec = self.recorder
        self._service = rec.appender(CHAT_SERVICE)
        self._intended = rec.appender(CHAT_INTENDED)
        self._send_lag = rec.appender(SEND_LAG)
        # Streamed: the wire times' histogram lists, bound like the ones above (an interval left
        # empty is dropped at rotation).
        self._stream_marks: tuple[list[float] | None, ...] = (
            tuple(rec.pending(tag) for tag in MARK_TAGS) if self.s.stream else ()
        )
        if self.lane is not None:
            self.lane.send_lag = self._send_lag
        if self.book is not None:
            self.book.bind(rec)
        self._status_list: list[int] = []
        self._statuses = self._status_list.append
        self._errors = 0
        self._streams = 0
        self._good = 0  # answered chats without an explanation that count toward goodput
        self._good_ms = self.goodput.chat_ms

    def _fold_hot(self, bucket: Bucket) -> None:
        """Add the hot path's per-bucket tallies to the bucket's counters."""
        statuses = self._status_list
        counts = bucket.counts
        if self._streams:
            counts["streams"] += self._streams
        if statuses:
            counts["requests"] += len(statuses)
            for status, n in collections.Counter(statuses).items():
                counts[_STATUS_KEYS.get(status) or f"status:{status}"] += n
        if len(statuses) - self._errors:
            counts["ok"] += len(statuses) - self._errors
        if self._good:
            counts["good"] += self._good

    def _set_templates(self) -> None:
        self._line = self._line_template()
        # Streamed: the same with every stream field in place (the order lines have always had),
        # so filling it in place never grows the dict.
        self._sline: dict[str, Any] = {**self._line, **STREAM_FIELDS}

    def _line_template(self) -> ChatRecord:
        """A chat record with this run's constants and the common case's values."""
        return {
            "v": records.CHAT_SCHEMA,
            "ts": None,
            "intended_ts": None,
            "latency_ms": None,
            "intended_latency_ms": None,
            "status": 0,
            "error_class": None,
            "error": None,
            "tenant": self.s.tenant_id,
            "attached": False,
            "granularity": None,
            "trace_id": None,
            "explanation_state": None,
            "chaos": self.chaos_flags,
            "shard": self.s.shard,
            "late": False,
            "run": self.run_id,
        }

    # --- the poller's outcomes (polling.TraceOutcome) -------------------------------------
    def polled(self, latency_ms: float, *, error: bool) -> None:
        counts = self.cur.counts
        counts["polls"] += 1
        if error:
            counts["poll_errors"] += 1
        self.recorder.record(POLL, latency_ms)

    def traced(self, record: ExplanationRecord, sla_ms: float | None, bound_ms: float | None) -> None:
        counts = self.cur.counts
        counts["traces"] += 1
        counts[f"state:{record['state']}"] += 1
        if record["state"] == "complete" and sla_ms is not None and bound_ms is not None:
            self.recorder.record(SLA_TOKEN if record["granularity"] == "token" else SLA_SENTENCE, sla_ms)
            self.recorder.record(SLA_BOUND, bound_ms)
        # an attached chat counts toward goodput in the bucket its explanation ended in
        if self.goodput.trace(
            record["trace_id"], state=record["state"], granularity=record["granularity"], sla_ms=sla_ms
        ):
            counts["good"] += 1
        self.files.explanation_line(record)

    def dropped(self, slot: float, why: str) -> None:
        counts = self.cur.counts
        counts["requests"] += 1
        counts["status:0"] += 1
        counts["class:dropped"] += 1
        line = self._line_template()
        line["intended_ts"], line["error_class"], line["error"] = self.wall(slot), "dropped", why
        line["late"] = True
        self.files.chat_line(line)

    # --- the ticker: loop lag, chaos flags, buckets ---------------------------------------
    async def _ticker(self) -> None:
        while True:
            expected = time.monotonic() + TICK_S
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.recorder.record(LOOP_LAG, max(now - expected, 0.0) * 1000.0)
            self.settle_streams()
            self.recorder.fold()
            flags = sorted(self._chaos.active())
            if flags != self.chaos_flags:
                self.chaos_flags = flags
                self._set_templates()
            while self.wall(now) >= self.cur.end_s:
                self._close_bucket(self.cur.end_s)

    def _close_bucket(self, end_s: float, *, final: bool = False) -> None:
        self.settle_streams()
        bucket = self.cur
        bucket.end_s = end_s if final else bucket.end_s
        self._fold_hot(bucket)
        intervals = [
            Interval(iv.tag, bucket.start_s, bucket.end_s, iv.histogram)
            for iv in self.recorder.rotate(bucket.end_s)
        ]
        self._bind_hot()
        self.files.intervals(intervals)
        self.tally.close_bucket(bucket, intervals)
        index = round((bucket.start_s - self.tally.t0_s) / self.s.bucket_seconds)
        self.tally.buckets[index] = bucket
        self.files.flush()
        view = bucket.view()
        view["run"] = self.run_id
        self.live.update(view, polls_in_flight=self.poller.in_flight, chaos=self.chaos_flags)
        if self.on_tick is not None:
            _safe_call(self.on_tick, view)
        if self.on_bucket is not None:
            self.on_bucket(bucket, self.poller.in_flight, self.chaos_flags)
        phase = "drain" if self.load_ended_s is not None else "load"
        self.cur = Bucket(bucket.end_s, bucket.end_s + self.s.bucket_seconds, phase)


def _safe_call(fn: Callable[[dict[str, Any]], None], view: dict[str, Any]) -> None:
    try:
        fn(view)
    except Exception:  # a caller's callback must never stop the run
        import logging

        logging.getLogger(__name__).exception("on_tick callback failed")
