"""The chat lane: one keep-alive connection per worker, driven by callbacks instead of coroutines.

Why callbacks: awaiting a future per request (``set_result``, a task wake-up on the next loop
turn, two coroutine frames, a ``wait_for``-style timeout) cost the runner a third of its
per-request CPU (``bench/generator_throughput.py``: the coroutine client alone reached 0.63x
of wrk). Here the last byte of an answer is parsed, recorded, and the next request written, all
inside the one ``data_received`` call that brought it. Only the rare paths (connect, a stale
keep-alive connection, a back-off after a refused connect) leave the callback.

Pacing decides *when* each request is meant to start:

* closed loop: a worker sends again as soon as it has its answer, or at its next slot from the
  shared :class:`~hif.harness.load.pacing.TokenBucket` when ``--rps-limit`` is set;
* open loop: :meth:`Lane.offer` hands each schedule slot to an idle worker, or queues it; a slot
  that waited longer than the request timeout for a free worker is dropped.

A stop lets requests in flight finish (each bounded by the request timeout); idle workers retire
at once.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from hif.errors import ClientConnectError, ClientProtocolError, ClientTimeoutError, LoadClientError
from hif.harness.client import BareHttpProtocol, Response
from hif.harness.load.pacing import TokenBucket
from hif.harness.load.requests import ChatRequests
from hif.harness.load.stream import StreamReader, reader_factory

SWEEP_S = 0.02  # request timeouts are checked this often (one timer for the whole lane)
CONNECT_BACKOFF_S = (0.05, 1.0)  # first and largest pause after a refused connection


# Opens one connection with the given protocol factory and returns the connected protocol: TCP
# by default, a fake transport in tests (the transport seam).
Connector = Callable[[Callable[[], "_Wire"]], Awaitable["_Wire"]]


class Outcome(Protocol):
    """What the lane reports each finished (or dropped) chat to: the engine's bookkeeping."""

    def take(self) -> bool: ...

    def chat_done(
        self, w: Worker, status: int, error_class: str | None, error: str | None, body: bytes
    ) -> None: ...

    def dropped(self, slot: float, why: str) -> None: ...


class _Wire(BareHttpProtocol):
    """One TCP connection of a worker; hands its answer straight to the worker."""

    def __init__(self, loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
        super().__init__(loop)
        self.worker = worker

    def on_message_complete(self) -> None:
        # BareHttpProtocol._finish without building a Response: this runs once per request.
        body = self._body
        self._body = []
        self._raw.clear()
        self.busy = False
        parser = self._parser
        self.worker.answered(
            self,
            parser.get_status_code(),
            body[0] if len(body) == 1 else b"".join(body),
            parser.should_keep_alive(),
        )

    def answered(self, resp: Response) -> None:  # an answer delimited by EOF (rare)
        self.worker.answered(self, resp.status, resp.body, resp.keep_alive)

    def failed(self, exc: Exception) -> None:
        self.worker.broke(self, exc)


class _StreamWire(_Wire):
    """A connection carrying streamed chats: every read goes whole to the worker's
    :class:`~hif.harness.load.stream.StreamReader`, which frames the answer and times its events
    (all events completed in one read arrived then: one clock read per read)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
        super().__init__(loop, worker)
        reader = worker.stream
        assert reader is not None
        self.reader = reader

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            whole = self.reader.read(data, time.monotonic())
        except ValueError as exc:
            self._fail(ClientProtocolError(f"unparseable HTTP answer: {exc}"))
            return
        if whole:
            self._whole()

    def _whole(self) -> None:
        self.busy = False
        r = self.reader
        self.worker.answered(self, r.status, r.body, r.keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.busy:
            return
        if exc is None and self.reader.eof():  # a body delimited by connection close
            self._whole()
            return
        self.busy = False  # what arrived before the cut still counts (partial timings)
        self.failed(ClientProtocolError(f"connection closed before the full answer ({exc or 'EOF'})"))


class Worker:
    """One closed-loop worker (or open-loop server of slots): its connection and its request."""

    __slots__ = (
        "attached",
        "backoff_s",
        "data",
        "deadline",
        "granularity",
        "index",
        "intended",
        "lane",
        "ready",
        "retried",
        "reused",
        "rng",
        "sent",
        "stream",
        "timer",
        "wire",
    )

    def __init__(self, lane: Lane, index: int, rng: random.Random) -> None:
        self.lane, self.index, self.rng = lane, index, rng
        self.wire: _Wire | None = None
        self.reused = False  # the wire already carried an answer (so the server may close it idle)
        self.retried = False
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0  # monotonic; 0 while nothing is in flight
        self.backoff_s = 0.0
        self.intended = self.ready = self.sent = 0.0
        self.attached, self.data = False, b""
        self.granularity: str | None = None
        self.stream: StreamReader | None = lane.new_reader() if lane.new_reader is not None else None

    # --- one request ----------------------------------------------------------------------
    def fire(self, intended: float, ready: float) -> None:
        """Queue the next chat, meant to start at ``intended``; ``ready`` is when we became free.

        The write happens in :meth:`Lane.flush` at the end of this loop turn, with every other
        request queued in it (see there why).
        """
        lane = self.lane
        self.intended, self.ready = intended, ready
        self.attached, self.granularity, self.data = lane.draw(self.rng)
        self.retried = False
        outbox = lane.outbox
        if not outbox:
            lane.loop.call_soon(lane.flush)
        outbox.append(self)

    def send(self) -> None:
        lane = self.lane
        intended, ready = self.intended, self.ready
        self.sent = sent = time.monotonic()
        if self.stream is not None:
            self.stream.reset()
        lane.send_lag((sent - (intended if intended > ready else ready)) * 1000.0)
        wire = self.wire
        if wire is None or wire.closed:
            lane.connect(self)
            return
        self.deadline = sent + lane.timeout_s
        wire.write(self.data)

    def answered(self, wire: _Wire, status: int, body: bytes, keep_alive: bool) -> None:
        if wire is not self.wire or not self.deadline:
            return  # an answer nobody asked for (a stray or a late one): not a result
        self.deadline = 0.0
        if keep_alive:
            self.reused = True
        else:
            wire.abort()
            self.wire = None
        self.backoff_s = 0.0
        lane = self.lane
        st = self.stream
        if st is not None and st.error is not None and status < 400:
            # The server ended the stream with an SSE error event (its headers were gone).
            lane.out.chat_done(self, status, "stream_error", _error_text(st.error), body)
        elif status < 400:
            lane.out.chat_done(self, status, None, None, body)
        else:
            error_class = "http_4xx" if status < 500 else "http_5xx"
            lane.out.chat_done(self, status, error_class, _error_text(body), body)
        lane.next(self)

    def broke(self, wire: _Wire, exc: Exception) -> None:
        if wire is not self.wire or not self.deadline:
            return
        self.wire = None
        if (
            isinstance(exc, ClientProtocolError)
            and self.reused
            and not wire.received_any
            and not self.retried
        ):
            # A keep-alive connection the server closed while idle fails before any answer byte;
            # that is not the server's answer, so send once more on a fresh connection.
            self.retried = True
            self.deadline = 0.0
            self.lane.connect(self)
            return
        self.fail(exc)

    def fail(self, exc: Exception) -> None:
        self.deadline = 0.0
        error_class = exc.error_class if isinstance(exc, LoadClientError) else "protocol"
        self.lane.out.chat_done(self, 0, error_class, str(exc), b"")
        if error_class == "connect":
            # A dead gateway gets doubling pauses (to a bound), not a busy loop of refusals.
            self.backoff_s = min(self.backoff_s * 2 or CONNECT_BACKOFF_S[0], CONNECT_BACKOFF_S[1])
            self.lane.park(self, self.backoff_s, self.lane.free)
        else:
            self.backoff_s = 0.0
            self.lane.free(self)

    def time_out(self) -> None:
        wire, self.wire = self.wire, None
        if wire is not None:
            wire.abort()  # the answer may still come; this connection is unusable now
        self.fail(ClientTimeoutError(f"no answer within {self.lane.timeout_s:g}s"))


class Lane:
    """The workers of one process and the pacing that feeds them."""

    def __init__(
        self,
        *,
        requests: ChatRequests,
        out: Outcome,
        workers: int,
        host: str,
        port: int,
        timeout_s: float,
        send_lag: Callable[[float], None],
        bucket: TokenBucket | None = None,
        open_loop: bool = False,
        connector: Connector | None = None,
        stream: bool = False,
        new_reader: Callable[[], StreamReader] | None = None,
    ) -> None:
        self.stream = stream
        self._wire_cls = _StreamWire if stream else _Wire
        # Streamed: each worker's reader (the engine's come from its StreamBook, which shares its
        # piece counts with them).
        self.new_reader = (new_reader or reader_factory()) if stream else None
        self.loop = asyncio.get_running_loop()
        self.requests, self.out = requests, out
        self.draw = requests.draw
        self.outbox: list[Worker] = []  # fired this loop turn, written by flush()
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.send_lag = send_lag  # the engine re-points it at each new histogram interval
        self.bucket, self.open_loop = bucket, open_loop
        self.workers = [Worker(self, i, requests.rng(i)) for i in range(workers)]
        self.idle: collections.deque[Worker] = collections.deque()  # open loop: free workers
        self.backlog: collections.deque[float] = collections.deque()  # open loop: waiting slots
        self.parked: set[Worker] = set()  # waiting on a timer (a slot, a back-off)
        self.stopping = False
        self._live = len(self.workers)
        self._done: asyncio.Future[None] = self.loop.create_future()
        self._connects: set[asyncio.Task[None]] = set()
        self._connector = connector or self._tcp
        self._sweep_handle: asyncio.TimerHandle | None = None
        # What a worker does once answered, picked once: the unlimited closed loop (the fast
        # case, where every microsecond is generator throughput) skips the general pacing.
        self.next = self.free if open_loop or bucket is not None else self._next_now

    def start(self) -> None:
        self._sweep_handle = self.loop.call_later(SWEEP_S, self._sweep)
        now = time.monotonic()
        for w in self.workers:
            w.ready = now
            self.free(w)

    async def stop(self, *, queued_grace_s: float = 0.0) -> None:
        """Stop offering load: idle workers retire, requests in flight finish; then return.

        Open loop: slots already queued are still sent for up to ``queued_grace_s``; the rest
        are recorded as dropped.
        """
        if self.open_loop and self.backlog and queued_grace_s > 0:
            deadline = time.monotonic() + queued_grace_s
            while self.backlog and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self.stopping = True
        while self.backlog:
            self.out.dropped(self.backlog.popleft(), "run ended before a worker was free")
        for w in list(self.parked):
            self._unpark(w)
            self._retire(w)
        while self.idle:
            self._retire(self.idle.popleft())
        await self.finished()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        for w in self.workers:
            if w.wire is not None:
                w.wire.abort()
                w.wire = None

    def flush(self) -> None:
        """Write every request queued this loop turn, back to back.

        Why not write each as its answer is handled: on loopback a write wakes the server's
        process when it sleeps, which costs the writer a cross-core wake-up (and in a VM an
        exit). Answers arrive in batches (one epoll wake-up returns many sockets); writing the
        batch's requests together after handling all of its answers, as wrk does, wakes the
        server once per batch instead of once per request: ~30% less system time per request
        here (bench/generator_throughput.py). Each request is stamped ``sent`` at its own write.
        """
        outbox, self.outbox = self.outbox, []
        for w in outbox:
            w.send()

    async def finished(self) -> None:
        """Wait until every worker has retired (a stop, or ``take()`` said no more)."""
        if self._live:
            await asyncio.shield(self._done)

    # --- pacing ---------------------------------------------------------------------------
    def _next_now(self, w: Worker) -> None:
        """Closed loop, no rate limit: send again at once."""
        if self.stopping or not self.out.take():
            self._retire(w)
            return
        now = time.monotonic()
        w.fire(now, now)

    def free(self, w: Worker) -> None:
        """``w`` may send again: now, at its next slot, or when a slot arrives (open loop)."""
        now = time.monotonic()
        if self.open_loop:
            self._serve_backlog(w, now)
            return
        if self.stopping:
            self._retire(w)
            return
        bucket = self.bucket
        if bucket is None:
            if self.out.take():
                w.fire(now, now)
            else:
                self._retire(w)
            return
        intended = bucket.reserve(now)
        if intended > now:
            self.park(w, intended - now, lambda w: self._fire_slot(w, intended, now))
        else:
            self._fire_slot(w, intended, now)

    def _fire_slot(self, w: Worker, intended: float, ready: float) -> None:
        if not self.stopping and self.out.take():
            w.fire(intended, ready)
        else:
            self._retire(w)

    def offer(self, slot: float) -> None:
        """Open loop: one schedule slot (already counted by ``take``)."""
        if self.idle:
            w = self.idle.popleft()
            w.fire(slot, w.ready)
        else:
            self.backlog.append(slot)

    def _serve_backlog(self, w: Worker, now: float) -> None:
        backlog = self.backlog
        while backlog:
            slot = backlog.popleft()
            if now - slot > self.timeout_s:
                self.out.dropped(slot, "waited longer than the request timeout for a free worker")
                continue
            w.fire(slot, now)
            return
        if self.stopping:
            self._retire(w)
        else:
            w.ready = now
            self.idle.append(w)

    def park(self, w: Worker, delay_s: float, then: Callable[[Worker], None]) -> None:
        """Wait ``delay_s`` between requests, where a stop may retire ``w`` early."""
        self.parked.add(w)
        w.timer = self.loop.call_later(delay_s, self._wake, w, then)

    def _wake(self, w: Worker, then: Callable[[Worker], None]) -> None:
        self.parked.discard(w)
        w.timer = None
        if self.stopping:
            self._retire(w)
        else:
            then(w)

    def _unpark(self, w: Worker) -> None:
        self.parked.discard(w)
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None

    def _retire(self, w: Worker) -> None:
        self._live -= 1
        if self._live == 0 and not self._done.done():
            self._done.set_result(None)

    # --- connections ----------------------------------------------------------------------
    def connect(self, w: Worker) -> None:
        """Open a connection for ``w`` and send its request (off the hot path: a task)."""
        w.deadline = w.sent + self.timeout_s  # a request's timeout covers its connect too
        task = self.loop.create_task(self._connect(w))
        self._connects.add(task)
        task.add_done_callback(self._connects.discard)

    async def _tcp(self, factory: Callable[[], _Wire]) -> _Wire:
        _, wire = await self.loop.create_connection(factory, self.host, self.port)
        return wire

    async def _connect(self, w: Worker) -> None:
        try:
            left_s = max(w.deadline - time.monotonic(), 0.001)
            wire = await asyncio.wait_for(self._connector(lambda: self._wire_cls(self.loop, w)), left_s)
        except TimeoutError:
            if w.deadline:
                w.fail(ClientConnectError(f"connect to {self.host}:{self.port} timed out"))
            return
        except OSError as exc:
            if w.deadline:
                w.fail(
                    ClientConnectError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}")
                )
            return
        if not w.deadline:  # timed out by the sweep meanwhile: already recorded
            wire.abort()
            return
        w.wire, w.reused = wire, False
        wire.write(w.data)

    def _sweep(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.deadline and w.deadline <= now and w.wire is not None:
                w.time_out()
        if self._live:
            self._sweep_handle = self.loop.call_later(SWEEP_S, self._sweep)


def _error_text(body: bytes) -> str:
    """The OpenAI envelope's message when there is one, else the start of the body."""
    import orjson

    try:
        message = orjson.loads(body)["error"]["message"]
        return str(message)[:300]
    except Exception:
        return body[:300].decode("utf-8", "replace")
