"""The chat lane at the transport seam: scripted answers fed to data_received, writes counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hif.harness.load.lane import Lane, Worker, _Wire
from hif.harness.load.pacing import TokenBucket
from hif.harness.load.requests import ChatRequests
from hif.harness.load.settings import LoadSettings

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n" + b'{"ok":true}'
ENVELOPE = b'{"error":{"message":"upstream is down","type":"upstream_error"}}'
CLOSE_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(ENVELOPE)
    + ENVELOPE
)


class FakeTransport:
    def __init__(self, wire: _Wire) -> None:
        self.wire, self.writes, self.aborted = wire, [], False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            asyncio.get_running_loop().call_soon(self.wire.connection_lost, None)


class Record:
    """The lane's Outcome: lets ``allow`` chats through, keeps every result."""

    def __init__(self, allow: int = 1000) -> None:
        self.allow, self.results, self.drops = allow, [], []

    def take(self) -> bool:
        if self.allow <= 0:
            return False
        self.allow -= 1
        return True

    def chat_done(
        self, w: Worker, status: int, error_class: str | None, error: str | None, body: bytes
    ) -> None:
        self.results.append((status, error_class, error))

    def dropped(self, slot: float, why: str) -> None:
        self.drops.append(why)


class Seam:
    """Connections the lane opened, each on a fake transport."""

    def __init__(self, refuse: int = 0) -> None:
        self.wires: list[_Wire] = []
        self.refuse = refuse

    async def connect(self, factory: Callable[[], _Wire]) -> _Wire:
        if self.refuse > 0:
            self.refuse -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        wire = factory()
        wire.connection_made(FakeTransport(wire))  # type: ignore[arg-type]
        self.wires.append(wire)
        return wire

    def transport(self, i: int = -1) -> FakeTransport:
        return self.wires[i]._transport  # type: ignore[return-value]


def lane(out: Record, seam: Seam, tmp_path: Path, **kw: Any) -> Lane:
    settings = LoadSettings(base_url="http://127.0.0.1:9", results_dir=tmp_path, max_tokens=0)
    args: dict[str, Any] = {"workers": 1, "timeout_s": 5.0, **kw}
    return Lane(
        requests=ChatRequests(settings.request_mix()),
        out=out,
        host="127.0.0.1",
        port=9,
        send_lag=lambda _ms: None,
        connector=seam.connect,
        **args,
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_answers_are_recorded_at_once_and_next_requests_written_together(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(allow=5), Seam()
        ln = lane(out, seam, tmp_path, workers=2)
        ln.start()
        await settle()
        a, b = seam.transport(0), seam.transport(1)
        assert len(a.writes) == len(b.writes) == 1
        assert a.writes[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        seam.wires[0].data_received(OK[:30])  # any chunking
        seam.wires[0].data_received(OK[30:])
        seam.wires[1].data_received(OK)
        assert out.results == [(200, None, None)] * 2  # recorded as each answer completes ...
        assert len(a.writes) == len(b.writes) == 1
        assert [w.index for w in ln.outbox] == [0, 1]
        await asyncio.sleep(0)  # ... the next requests go out together at the end of the turn
        assert len(a.writes) == len(b.writes) == 2 and not ln.outbox
        seam.wires[0].data_received(OK)
        seam.wires[1].data_received(OK)
        await settle()
        seam.wires[0].data_received(OK)
        await asyncio.wait_for(ln.finished(), 1)  # take() said no after five
        assert len(out.results) == 5 and len(a.writes) + len(b.writes) == 5
        seam.wires[0].data_received(OK)  # a stray answer nobody asked for is not a result
        assert len(out.results) == 5 and len(seam.wires) == 2
        await ln.stop()

    asyncio.run(go())


def test_error_answer_with_connection_close_opens_a_new_connection(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(allow=2), Seam()
        ln = lane(out, seam, tmp_path)
        ln.start()
        await settle()
        seam.wires[0].data_received(CLOSE_503)
        assert out.results == [(503, "http_5xx", "upstream is down")]
        assert seam.transport(0).aborted
        await settle()
        assert len(seam.wires) == 2 and len(seam.transport(1).writes) == 1  # resent on a fresh one
        seam.wires[1].data_received(OK)
        await asyncio.wait_for(ln.finished(), 1)
        assert out.results[-1] == (200, None, None)
        await ln.stop()

    asyncio.run(go())


def test_a_stale_keep_alive_connection_is_retried_once(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(allow=2), Seam()
        ln = lane(out, seam, tmp_path)
        ln.start()
        await settle()
        seam.wires[0].data_received(OK)  # the connection is now a reused one
        seam.wires[0].connection_lost(None)  # the server closed it idle: no answer byte came
        await settle()
        assert out.results == [(200, None, None)]  # the close is not a result
        assert len(seam.wires) == 2 and len(seam.transport(1).writes) == 1
        seam.wires[1].connection_lost(None)  # a fresh connection closing is the server's answer
        assert out.results[-1][1] == "protocol" and "closed before the full answer" in out.results[-1][2]
        await asyncio.wait_for(ln.stop(), 1)

    asyncio.run(go())


def test_a_cut_answer_is_a_protocol_error_and_an_eof_body_is_an_answer(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(allow=2), Seam()
        ln = lane(out, seam, tmp_path)
        ln.start()
        await settle()
        seam.wires[0].data_received(OK[:-3])  # content-length promised 11 bytes, 8 came
        seam.wires[0].connection_lost(None)
        assert out.results[-1][1] == "protocol"
        await settle()
        seam.wires[1].data_received(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}")
        seam.wires[1].connection_lost(None)  # no length: EOF ends the body
        assert out.results[-1] == (200, None, None)
        await ln.stop()

    asyncio.run(go())


def test_unparseable_answer_is_a_protocol_error(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(allow=1), Seam()
        ln = lane(out, seam, tmp_path)
        ln.start()
        await settle()
        seam.wires[0].data_received(b"SMTP ready\r\n\r\n")
        assert out.results[-1][1] == "protocol" and "unparseable" in out.results[-1][2]
        await ln.stop()

    asyncio.run(go())


def test_a_silent_server_times_out_and_loses_the_connection(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(allow=1), Seam()
        ln = lane(out, seam, tmp_path, timeout_s=0.05)
        ln.start()
        await asyncio.wait_for(ln.finished(), 2)  # the sweep fires the timeout
        assert out.results == [(0, "timeout", "no answer within 0.05s")]
        assert seam.transport(0).aborted
        await ln.stop()

    asyncio.run(go())


def test_refused_connects_back_off(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(allow=3), Seam(refuse=2)
        ln = lane(out, seam, tmp_path)
        t0 = time.monotonic()
        ln.start()
        await settle()
        assert out.results[0][1] == "connect" and ln.parked  # waiting before the next try
        deadline = time.monotonic() + 2
        while not seam.wires and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # two refusals: pauses of 0.05 s then 0.1 s before the third try connects
        assert len(out.results) == 2 and time.monotonic() - t0 >= 0.15
        seam.wires[0].data_received(OK)
        assert out.results[-1] == (200, None, None)
        await asyncio.wait_for(ln.stop(), 1)

    asyncio.run(go())


def test_open_loop_serves_slots_queues_them_and_drops_stale_ones(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(), Seam()
        ln = lane(out, seam, tmp_path, open_loop=True, timeout_s=1.0)
        ln.start()
        assert list(ln.idle) == ln.workers  # no slot yet: the worker waits
        now = time.monotonic()
        ln.offer(now)
        await settle()
        assert len(seam.transport().writes) == 1
        ln.offer(now - 5.0)  # a slot the worker cannot reach within the timeout
        ln.offer(now)
        assert len(ln.backlog) == 2
        seam.wires[0].data_received(OK)
        assert out.drops == ["waited longer than the request timeout for a free worker"]
        await settle()
        assert len(seam.transport().writes) == 2 and not ln.backlog
        ln.offer(now)  # queued behind the request in flight ...
        stopping = asyncio.ensure_future(ln.stop())
        await settle()  # ... and still queued at the stop: recorded as dropped, not lost
        assert out.drops[-1] == "run ended before a worker was free" and not stopping.done()
        seam.wires[0].data_received(OK)  # the request in flight still finishes
        await asyncio.wait_for(stopping, 1)
        assert len(out.results) == 2

    asyncio.run(go())


def test_stop_retires_a_worker_waiting_for_its_slot_at_once(tmp_path: Path) -> None:
    async def go() -> None:
        out, seam = Record(), Seam()
        ln = lane(out, seam, tmp_path, bucket=TokenBucket(0.5, max_backlog_s=5.0))  # a slot per 2 s
        ln.start()
        await settle()
        seam.wires[0].data_received(OK)
        assert ln.parked  # the next slot is 2 s away
        t0 = time.monotonic()
        await asyncio.wait_for(ln.stop(), 1)
        assert time.monotonic() - t0 < 0.5 and len(out.results) == 1

    asyncio.run(go())


@pytest.mark.parametrize("workers", [1, 8])
def test_stop_lets_requests_in_flight_finish(tmp_path: Path, workers: int) -> None:
    async def go() -> None:
        out, seam = Record(), Seam()
        ln = lane(out, seam, tmp_path, workers=workers)
        ln.start()
        await settle()
        stopping = asyncio.ensure_future(ln.stop())
        await settle()
        assert not stopping.done()  # every worker has a request out
        for wire in seam.wires:
            wire.data_received(OK)
        await asyncio.wait_for(stopping, 1)
        assert len(out.results) == workers and all(len(seam.transport(i).writes) == 1 for i in range(workers))

    asyncio.run(go())
