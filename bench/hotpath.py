"""The load runner's per-request CPU in Python, without sockets: where generator time goes.

A fake transport answers every request the chat lane writes with a canned nginx answer, fed
straight back into ``data_received`` for ``--batch`` connections per event-loop turn (as one
epoll wake-up delivers them), so the loop below is the runner's whole per-request Python path
(parse, record, JSONL line, pick and write the next request, its share of the loop turn) and
nothing else. Baseline, in
the same run: the same bytes through a bare httptools parser that records nothing, which is the
least any Python client pays. Syscalls (one read and one write per request, ~14 us here) come
on top of both; ``bench/generator_throughput.py`` measures the whole thing against wrk.

    python bench/hotpath.py                 # 200k requests per round, 5 rounds, medians
    python bench/hotpath.py --requests 50000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httptools  # noqa: E402

from hif.harness.client import new_event_loop  # noqa: E402
from hif.harness.load.engine import Engine  # noqa: E402
from hif.harness.load.lane import Lane, _Wire  # noqa: E402
from hif.harness.load.settings import LoadSettings  # noqa: E402

ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 05:35:41 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\n"
    b'{"ok":true}'
)


class FakeTransport:
    """The transport seam: counts writes, sends nothing."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def abort(self) -> None:
        pass


async def runner_round(n: int, results: Path, batch: int) -> float:
    settings = LoadSettings(
        base_url="http://127.0.0.1:9", concurrency=batch, results_dir=results, live="off", max_tokens=0
    )
    engine = Engine(settings)
    engine.begin()
    lane = engine.lane = Lane(
        requests=engine.requests,
        out=engine,
        workers=batch,
        host="127.0.0.1",
        port=9,
        timeout_s=settings.timeout_seconds,
        send_lag=engine._send_lag,
    )
    wires, transports = [], []
    for worker in lane.workers:
        wire = _Wire(lane.loop, worker)
        transport = FakeTransport()
        wire.connection_made(transport)  # type: ignore[arg-type]
        worker.wire, worker.ready = wire, time.monotonic()
        wires.append(wire)
        transports.append(transport)
        lane.free(worker)
    await asyncio.sleep(0)  # the loop turn that writes the first requests
    feeds = [w.data_received for w in wires]
    turns = n // batch
    t0 = time.perf_counter()
    for _ in range(turns):
        for feed in feeds:  # one epoll wake-up's worth of answers ...
            feed(ANSWER)
        await asyncio.sleep(0)  # ... then the turn ends and the lane writes the next requests
    elapsed = time.perf_counter() - t0
    engine._fold_hot(engine.cur)
    engine.files.close()
    recorded, writes = engine.cur.counts["requests"], sum(t.writes for t in transports)
    if recorded != turns * batch or writes != (turns + 1) * batch:
        raise SystemExit(f"runner round recorded {recorded} of {turns * batch} answers ({writes} writes)")
    return elapsed / (turns * batch) * 1e6


class _Bare:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.done = 0

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done += 1
        self.body = []


def bare_round(n: int) -> float:
    bare = _Bare()
    feed = bare.parser.feed_data
    t0 = time.perf_counter()
    for _ in range(n):
        feed(ANSWER)
    elapsed = time.perf_counter() - t0
    assert bare.done == n
    return elapsed / n * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=16, help="answers handled per loop turn")
    args = p.parse_args()
    runner, bare = [], []
    with tempfile.TemporaryDirectory(prefix="hif-hotpath-") as tmp:
        for i in range(args.rounds):  # interleaved, so drift on a noisy machine hits both
            bare.append(bare_round(args.requests))
            loop = new_event_loop()  # uvloop, as the runner uses
            try:
                runner.append(
                    loop.run_until_complete(runner_round(args.requests, Path(tmp) / str(i), args.batch))
                )
            finally:
                loop.close()
    r, b = statistics.median(runner), statistics.median(bare)
    print(
        f"per request, median of {args.rounds} rounds of {args.requests}, {args.batch} answers per loop turn:"
    )
    print(f"  runner hot path (parse, record, JSONL line, next request): {r:6.2f} us")
    print(f"  bare httptools parse, nothing recorded (baseline):          {b:6.2f} us")
    print(f"  runner / baseline = {r / b:.2f}x; runner's own bookkeeping = {r - b:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
