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
    python bench/hotpath.py --stream --requests 5000   # streamed: 64 one-token SSE chunks each
    python bench/hotpath.py --stream --one-read         # the whole stream in one read, as a fast server's

``--stream``: each answer is a chunked SSE stream (a role-only chunk, 64 one-token content chunks,
a finish chunk, a usage chunk, ``[DONE]``), each chunk its own read, as a stream at decode speed
arrives; the baseline parses the same reads with a bare httptools parser. The token pass (done
between buckets, off the request path) is timed apart: ~0 with the C reader, whose warm table lets
the engine write each line as its stream ends. No ticker runs in the timed loop, so a stream that
does wait for the pass (the Python reader's, every one) waits there until the round ends.
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
from hif.harness.load.lane import Lane, _StreamWire, _Wire  # noqa: E402
from hif.harness.load.settings import LoadSettings  # noqa: E402

ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 05:35:41 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\n"
    b'{"ok":true}'
)


STREAM_TOKENS = 64


def _sse_reads() -> list[bytes]:
    """One streamed answer as the reads that deliver it: headers with the role-only chunk, then a
    read per content chunk, then the finish, usage and ``[DONE]`` chunks with the terminator."""

    def chunk(payload: bytes) -> bytes:
        data = b"data: " + payload + b"\n\n"
        return b"%x\r\n%s\r\n" % (len(data), data)

    base = b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"sim","choices":'
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        + chunk(base + b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}')
    )
    words = [b"the", b" model", b" reads", b" each"]
    body = [
        chunk(base + b'[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}' % words[i % 4])
        for i in range(STREAM_TOKENS)
    ]
    tail = (
        chunk(base + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}')
        + chunk(base + b'[],"usage":{"prompt_tokens":9,"completion_tokens":64,"total_tokens":73}}')
        + chunk(b"[DONE]")
        + b"0\r\n\r\n"
    )
    return [head, *body, tail]


SSE_READS = _sse_reads()


class FakeTransport:
    """The transport seam: counts writes, sends nothing."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def abort(self) -> None:
        pass


async def runner_round(
    n: int, results: Path, batch: int, stream: bool = False, one_read: bool = False
) -> tuple[float, float]:
    """(us per request on the hot path, us per request in the token pass)."""
    settings = LoadSettings(
        base_url="http://127.0.0.1:9",
        concurrency=batch,
        results_dir=results,
        live="off",
        max_tokens=0,
        stream=stream,
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
        stream=stream,
        new_reader=engine.book.new_reader if engine.book is not None else None,
    )
    wires, transports = [], []
    for worker in lane.workers:
        wire = (_StreamWire if stream else _Wire)(lane.loop, worker)
        transport = FakeTransport()
        wire.connection_made(transport)  # type: ignore[arg-type]
        worker.wire, worker.ready = wire, time.monotonic()
        wires.append(wire)
        transports.append(transport)
        lane.free(worker)
    await asyncio.sleep(0)  # the loop turn that writes the first requests
    feeds = [w.data_received for w in wires]
    turns = n // batch
    reads = _reads(stream, one_read)
    # One untimed turn, then the token pass, as a run has had by its second ticker turn: from then
    # on the C reader finds each piece's token count in the table the pass filled.
    for read in reads:
        for feed in feeds:
            feed(read)
    await asyncio.sleep(0)
    engine.settle_streams()
    t0 = time.perf_counter()
    for _ in range(turns):
        for read in reads:
            for feed in feeds:  # one epoll wake-up's worth of reads ...
                feed(read)
        await asyncio.sleep(0)  # ... then the turn ends and the lane writes the next requests
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    engine.settle_streams()
    settle_s = time.perf_counter() - t1
    engine._fold_hot(engine.cur)
    engine.files.close()
    recorded, writes = engine.cur.counts["requests"], sum(t.writes for t in transports)
    if recorded != (turns + 1) * batch or writes != (turns + 2) * batch:
        raise SystemExit(
            f"runner round recorded {recorded} of {(turns + 1) * batch} answers ({writes} writes)"
        )
    return elapsed / (turns * batch) * 1e6, settle_s / (turns * batch) * 1e6


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


def _reads(stream: bool, one_read: bool) -> list[bytes]:
    if not stream:
        return [ANSWER]
    return [b"".join(SSE_READS)] if one_read else SSE_READS


def bare_round(n: int, stream: bool = False, one_read: bool = False) -> float:
    bare = _Bare()
    feed = bare.parser.feed_data
    reads = _reads(stream, one_read)
    t0 = time.perf_counter()
    for _ in range(n):
        for read in reads:
            feed(read)
    elapsed = time.perf_counter() - t0
    assert bare.done == n
    return elapsed / n * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=16, help="answers handled per loop turn")
    p.add_argument("--stream", action="store_true", help="streamed answers (64 one-token SSE chunks)")
    p.add_argument("--one-read", action="store_true", help="with --stream: each answer arrives in one read")
    args = p.parse_args()
    runner, bare, settle = [], [], []
    with tempfile.TemporaryDirectory(prefix="hif-hotpath-") as tmp:
        for i in range(args.rounds):  # interleaved, so drift on a noisy machine hits both
            bare.append(bare_round(args.requests, args.stream, args.one_read))
            loop = new_event_loop()  # uvloop, as the runner uses
            try:
                hot, token_pass = loop.run_until_complete(
                    runner_round(args.requests, Path(tmp) / str(i), args.batch, args.stream, args.one_read)
                )
            finally:
                loop.close()
            runner.append(hot)
            settle.append(token_pass)
    r, b = statistics.median(runner), statistics.median(bare)
    print(
        f"per request, median of {args.rounds} rounds of {args.requests}, {args.batch} answers per loop turn:"
    )
    print(f"  runner hot path (parse, record, JSONL line, next request): {r:6.2f} us")
    print(f"  bare httptools parse, nothing recorded (baseline):          {b:6.2f} us")
    print(f"  runner / baseline = {r / b:.2f}x; runner's own bookkeeping = {r - b:.2f} us")
    if args.stream:
        print(f"  per content chunk: runner {r / STREAM_TOKENS:.3f} us, bare {b / STREAM_TOKENS:.3f} us")
        print(f"  token pass (off the request path, between buckets): {statistics.median(settle):6.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
