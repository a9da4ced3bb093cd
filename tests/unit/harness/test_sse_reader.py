"""The two streamed-answer readers agree: the C ``SSEReader`` and the pure-Python ``HttpStreamTimes``.

Random HTTP answers (chunked, content-length or close-delimited; SSE events with escapes, unicode,
invalid escapes and bytes, role-only, empty and null content, reasoning, tool calls, usage, an
explanation, error events, comments and multi-line data; LF, CRLF and lone-CR line endings) are
cut into reads at random places, chunk boundaries falling anywhere inside events, and fed to both;
every figure either reader produces must match after every read and at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hif.errors import ConfigError
from hif.harness.load.stream import (
    ITL,
    MARK_TAGS,
    READER_ENV,
    TPOT,
    HttpStreamTimes,
    StreamBook,
    StreamReader,
    reader_factory,
    stamp,
)
from hif.harness.stats import IntervalRecorder

try:
    from hif.harness.load._sse import SSEReader
except ImportError:  # the fallback alone: skipped here, failed under CI (below)
    SSEReader = None

needs_c = pytest.mark.skipif(
    SSEReader is None,
    reason="C SSE reader not built (bash scripts/setup.sh, or python setup.py build_ext --inplace)",
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_ci_builds_the_c_reader() -> None:
    """Under CI=true the extension must be there, so CI never tests only the fallback."""
    if os.environ.get("CI", "").lower() != "true":
        pytest.skip("only under CI=true")
    assert SSEReader is not None, "hif/harness/load/_sse.c was not built: run bash scripts/setup.sh"
    assert reader_factory("auto") is SSEReader


def test_reader_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert reader_factory("python") is HttpStreamTimes
    monkeypatch.setenv(READER_ENV, "python")
    assert reader_factory() is HttpStreamTimes
    with pytest.raises(ConfigError, match=READER_ENV):
        reader_factory("fast")
    if SSEReader is not None:
        assert reader_factory("c") is SSEReader and reader_factory("auto") is SSEReader
    monkeypatch.setitem(sys.modules, "hif.harness.load._sse", None)  # as if never built
    assert reader_factory("auto") is HttpStreamTimes
    with pytest.raises(ConfigError, match="not built"):
        reader_factory("c")


# --- random answers ---------------------------------------------------------------------------

TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from(['"', "\\", "\n", "\r", "\t", "é", "😀"]),
    max_size=12,
)
# Raw string bodies that are not valid JSON strings (a bad escape, a bare control byte, invalid
# UTF-8): the reader keeps such a piece as it came.
RAW_BODY = st.sampled_from([b"a\\x", b"\\ud800", b"\\udc00z", b"b\x01", b"\xff\xfe", b"\\u12", b"ok\\\\"])


def chunk_payload(delta: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
    return {"id": "c", "object": "chat.completion.chunk", "choices": choices, **extra}


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                "content",
                "content",
                "content",
                "role",
                "null",
                "empty",
                "reasoning",
                "tool",
                "usage",
                "usage_null",
                "explanation",
                "error",
                "done",
                "raw_content",
                "spaced",
                "finish",
            ]
        )
    )
    if kind == "content":
        return orjson.dumps(chunk_payload({"content": draw(TEXT)}))
    if kind == "role":
        return orjson.dumps(chunk_payload({"role": "assistant", "content": ""}))
    if kind == "null":
        return orjson.dumps(chunk_payload({"content": None}))
    if kind == "empty":
        return orjson.dumps(chunk_payload({}))
    if kind == "reasoning":
        key = draw(st.sampled_from(["reasoning_content", "reasoning"]))
        return orjson.dumps(chunk_payload({key: draw(TEXT)}))
    if kind == "tool":
        call = {"index": 0, "function": {"name": "f", "arguments": '{"content":"x"}'}}
        return orjson.dumps(chunk_payload({"tool_calls": draw(st.sampled_from([[call], []]))}))
    if kind == "usage":
        n = draw(st.integers(0, 999))
        return orjson.dumps(chunk_payload(None, usage={"prompt_tokens": 3, "completion_tokens": n}))
    if kind == "usage_null":
        return orjson.dumps(chunk_payload({"content": draw(TEXT)}, usage=None))
    if kind == "explanation":
        return orjson.dumps(chunk_payload(None, explanation={"trace_id": "t", "state": "queued"}))
    if kind == "error":
        return orjson.dumps({"error": {"message": draw(TEXT), "type": "x"}})
    if kind == "done":
        return b"[DONE]"
    if kind == "raw_content":
        return b'{"choices":[{"delta":{"content":"' + draw(RAW_BODY) + b'"}}]}'
    if kind == "spaced":
        return (
            b'{ "choices" : [ { "delta" : { "content" : "'
            + draw(TEXT).encode().replace(b'"', b"")
            + b'" } } ] }'
        )
    return orjson.dumps(
        {**chunk_payload({}), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    )


EOL = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def sse_bodies(draw: st.DrawFn) -> bytes:
    """Events separated by blank lines, each line ending as the draw says (mixed in one stream)."""
    out = []
    for _ in range(draw(st.integers(0, 8))):
        lines = [b"data: " + draw(payloads())]
        shape = draw(st.sampled_from(["plain", "plain", "comment", "multi", "nospace"]))
        if shape == "comment":
            lines.insert(0, b": keep-alive")
        elif shape == "multi":
            lines.append(b"data: more")
        elif shape == "nospace":
            lines[0] = b"data:" + lines[0][6:]
        out.append(b"".join(line + draw(EOL) for line in lines) + draw(EOL))
    if draw(st.booleans()):  # a last event without its blank line
        out.append(b"data: " + draw(payloads()))
    return b"".join(out)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(marks) if b > a]


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(the raw HTTP answer, whether only the connection's close ends it)."""
    status = draw(st.sampled_from([200, 200, 200, 200, 201, 400, 503]))
    body = (
        draw(sse_bodies())
        if status < 400
        else b'{"error":{"message":"' + draw(TEXT).encode().replace(b'"', b"").replace(b"\\", b"") + b'"}}'
    )
    framing = draw(st.sampled_from(["chunked", "chunked", "chunked", "length", "close"]))
    head = [b"HTTP/1.1 %d X" % status, b"Content-Type: text/event-stream"]
    if draw(st.booleans()):
        head.append(draw(st.sampled_from([b"Connection: close", b"connection: keep-alive"])))
    if framing == "chunked":
        head.append(
            draw(st.sampled_from([b"Transfer-Encoding: chunked", b"transfer-encoding: gzip, chunked"]))
        )
        pieces = cut(body, draw(st.lists(st.integers(0, 10_000), max_size=10)))
        framed = b"".join(
            b"%s%s\r\n%s\r\n"
            % (
                (b"%x" if draw(st.booleans()) else b"%X") % len(p),
                draw(st.sampled_from([b"", b";ext=1"])),
                p,
            )
            for p in pieces
        )
        framed += b"0\r\n" + draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"])) + b"\r\n"
    elif framing == "length":
        head.append(b"Content-Length: %d" % len(body))
        framed = body
    else:
        framed = body
    return b"\r\n".join(head) + b"\r\n\r\n" + framed, framing == "close"


FIELDS = (
    "first_byte",
    "first_output",
    "first_content",
    "last_content",
    "content_times",
    "content_raw",
    "usage",
    "explanation",
    "error",
    "pending",
)


def state(r: StreamReader, whole: bool) -> dict[str, Any]:
    out = {f: getattr(r, f) for f in FIELDS}
    out["content_times"], out["content_raw"] = list(r.content_times), list(r.content_raw)  # snapshots
    out["content_chunks"] = r.content_chunks
    if whole:
        out.update(status=r.status, keep_alive=bool(r.keep_alive), body=r.body)
    return out


def run_reader(reader: StreamReader, reads: list[bytes], close_ends: bool) -> list[Any]:
    """What the reader reports after each read (and at EOF), over two answers on one reader."""
    seen: list[Any] = []
    for _answer in range(2):  # keep-alive: the second answer on a reset reader
        reader.reset()
        whole = False
        for k, data in enumerate(reads):
            whole = reader.read(data, float(k + 1))
            seen.append((whole, state(reader, whole)))
            if whole:
                break
        if not whole and close_ends:
            whole = reader.eof()
            seen.append(("eof", whole, state(reader, whole)))
    return seen


@needs_c
@FUZZ
@given(answers(), st.lists(st.integers(0, 100_000), max_size=12))
def test_c_and_python_readers_agree(answer: tuple[bytes, bool], points: list[int]) -> None:
    raw, close_ends = answer
    reads = cut(raw, points)
    assert SSEReader is not None
    assert run_reader(SSEReader(), reads, close_ends) == run_reader(HttpStreamTimes(), reads, close_ends)


# --- line endings, each reader ----------------------------------------------------------------

READERS = [pytest.param(HttpStreamTimes, id="python"), pytest.param(SSEReader, id="c", marks=needs_c)]
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def framed(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(body), body)


def content(text: str, eol: bytes = b"\n") -> bytes:
    return b"data: " + orjson.dumps(chunk_payload({"content": text})) + eol + eol


@pytest.mark.parametrize("cls", READERS)
@pytest.mark.parametrize("eol", [b"\r\n", b"\r"], ids=["crlf", "cr"])
def test_crlf_and_cr_events_are_split_and_timed(cls: type[StreamReader], eol: bytes) -> None:
    r = cls()
    r.reset()
    role = b"data: " + orjson.dumps(chunk_payload({"role": "assistant", "content": ""})) + eol + eol
    usage = orjson.dumps(chunk_payload(None, usage={"prompt_tokens": 2, "completion_tokens": 3}))
    reads = [
        (HEAD + framed(role), 1.0),
        (framed(content("a", eol)), 1.05),
        (framed(content("b", eol) + content("c", eol)), 1.15),
        (framed(b"data: " + usage + eol + eol + b"data: [DONE]" + eol + eol) + b"0\r\n\r\n", 1.2),
    ]
    results = [r.read(data, t) for data, t in reads]
    assert results == [False, False, False, True]
    assert r.first_byte == 1.0 and r.first_content == 1.05 and r.last_content == 1.15
    assert r.content_times == [1050.0, 1150.0, 1150.0] and r.content_raw == [b"a", b"b", b"c"]
    assert r.usage is not None and b'"completion_tokens":3' in r.usage and r.pending == b""


@pytest.mark.parametrize("cls", READERS)
def test_a_crlf_pair_split_across_reads_is_one_line_end(cls: type[StreamReader]) -> None:
    """``data: a\\r`` | ``\\ndata: b\\r\\n\\r\\n``: one event of two data lines, complete at the
    second read; the first read's CR already ended a line, so the LF opening the next is no blank
    line (were it one, the first event would count a read early)."""
    r = cls()
    r.reset()
    first = b'data: {"choices":[{"delta":{"content":"a"}}]}\r'
    second = b'\ndata: {"x":1}\r\n\r\n'
    assert not r.read(HEAD + framed(first), 1.0)
    assert r.content_times == [] and r.first_content == 0.0
    assert not r.read(framed(second), 2.0)
    assert r.content_times == [2000.0] and r.content_raw == [b"a"]
    # A CRLF CRLF blank line cut between its pairs and inside one: complete at the read with its last CR.
    assert not r.read(framed(b'data: {"choices":[{"delta":{"content":"b"}}]}\r\n'), 3.0)
    assert not r.read(framed(b"\r"), 4.0)
    assert r.content_times == [2000.0, 4000.0]
    assert r.read(framed(b"\n") + b"0\r\n\r\n", 5.0) and r.content_times == [2000.0, 4000.0]


@pytest.mark.parametrize("cls", READERS)
def test_mixed_line_endings_in_one_read(cls: type[StreamReader]) -> None:
    r = cls()
    r.reset()
    body = content("a", b"\n") + content("b", b"\r\n") + content("c", b"\r") + b"data: x\r\n\n"
    assert r.read(HEAD + framed(body) + b"0\r\n\r\n", 7.0)
    assert r.content_raw == [b"a", b"b", b"c"] and r.content_times == [7000.0] * 3 and r.pending == b""


@pytest.mark.parametrize("cls", READERS)
def test_an_error_envelope_and_a_close_delimited_stream(cls: type[StreamReader]) -> None:
    r = cls()
    r.reset()
    envelope = b'{"error":{"message":"no","type":"invalid_request_error"}}'
    answer = b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s" % (len(envelope), envelope)
    assert r.read(answer, 1.0) and r.status == 400 and r.body == envelope and r.keep_alive
    r.reset()
    assert not r.read(b"HTTP/1.0 200 OK\r\n\r\n" + content("hi") + b"data: [DONE]", 2.0)
    assert r.eof() and r.status == 200 and not r.keep_alive and r.content_raw == [b"hi"]


@pytest.mark.parametrize("cls", READERS)
def test_unparseable_http_is_a_value_error(cls: type[StreamReader]) -> None:
    r = cls()
    r.reset()
    with pytest.raises(ValueError):
        r.read(HEAD + b"zz\r\n", 1.0)


# --- the token pass: figures counted in C equal StreamBook's pass over the pieces ---------------


class _Words:
    """A stand-in tokenizer: one token per word, so whitespace-only pieces count 0 and others 2+."""

    def count(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


WORDS = st.lists(
    st.sampled_from(["a", " b", " ", "c d", " e f g", "", "\\n", "\n", "h"]), min_size=0, max_size=10
)


def _records(
    cls: Any, streams: list[list[tuple[bytes, float]]], at_once: bool = False
) -> tuple[list[Any], list[Any], list[Any]]:
    """The second pass's records, ITL and TPOT values (the first pass teaches the piece counts);
    ``at_once``: each line written by StreamBook.finish where it can, as the engine does."""
    book = StreamBook(_Words(), {}, reader=cls)  # type: ignore[arg-type]
    figures, out = [], []
    for _pass in range(2):
        recorder = IntervalRecorder(0.0)
        book.bind(recorder)
        lines: list[dict[str, Any]] = []
        for reads in streams:
            r = book.new_reader()
            r.reset()
            for data, t in reads:
                r.read(data, t)
            line: dict[str, Any] = {}
            end = r.stamp(line, 0.5, 0.4, 9.0, tuple(recorder.pending(tag) for tag in MARK_TAGS))
            assert end == stamp({}, r, 0.5, 0.4, 9.0)
            line["latency_ms"] = (end - 0.5) * 1000.0
            figures.append(r.token_figures() is not None)
            if not (at_once and book.finish(line, r, b"req", lines.append)):
                book.add(line, r, b"req")
        counts: Counter[str] = Counter()
        book.settle(recorder, counts, lines.append)
        out = [*lines, dict(counts)]
        hists = {iv.tag: iv.histogram for iv in recorder.rotate(1.0)}
    summary = [
        (h.count, [h.percentile(q) for q in (0, 50, 90, 100)]) if h else None
        for h in (hists.get(tag) for tag in (ITL, TPOT, *MARK_TAGS))
    ]
    return out, summary, figures


@needs_c
@FUZZ
@given(st.lists(st.lists(st.tuples(WORDS, st.integers(0, 3)), max_size=6), min_size=1, max_size=4))
def test_token_figures_in_c_equal_the_token_pass(spec: list[list[tuple[list[str], int]]]) -> None:
    streams = []
    for reads_spec in spec:
        reads, t = [], 1.0
        for k, (texts, gap) in enumerate(reads_spec):
            body = b"".join(content(x) for x in texts)
            t += gap * 0.01
            reads.append(((HEAD if k == 0 else b"") + (framed(body) if body else b""), t))
        usage = b""
        if len(reads_spec) % 2:  # a usage event on some streams, its count matching the text or not
            n = len(reads_spec) * 2
            usage = b'data: {"choices":[],"usage":{"prompt_tokens": 7,"completion_tokens":%d}}\n\n' % n
        end = framed(usage) if usage else b""
        reads.append(((b"" if reads else HEAD) + end + b"0\r\n\r\n", t + 0.001))
        streams.append(reads)
    c_lines, c_hists, c_fast = _records(SSEReader, streams)
    py_lines, py_hists, _ = _records(HttpStreamTimes, streams)
    assert c_lines == py_lines and c_hists == py_hists
    # Written at once (no queue, counters summed per pass), the records and histograms are the same.
    now_lines, now_hists, _ = _records(SSEReader, streams, at_once=True)
    assert now_lines == py_lines and now_hists == py_hists
    assert all(c_fast[len(streams) :])  # the second pass took the C figures


# --- the engine: lines written at once from one reused template ---------------------------------


class _Sink:
    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


def _engine_lines(tmp_path: Path, reader: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Two workers answered in turn, 3 rounds with a token pass after the first: worker 0 gets
    three pieces and a usage event, worker 1 two pieces and none; the records, in order."""
    from hif.harness.client import new_event_loop
    from hif.harness.load.engine import Engine
    from hif.harness.load.lane import Lane, _StreamWire
    from hif.harness.load.settings import LoadSettings

    monkeypatch.setenv(READER_ENV, reader)
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3}}\n\n'
    answers = [
        HEAD + framed(b"".join(content(x) for x in ("one", " two", " three")) + usage) + b"0\r\n\r\n",
        HEAD + framed(content("four") + content(" five")) + b"0\r\n\r\n",
    ]

    async def run() -> None:
        load = LoadSettings(
            base_url="http://127.0.0.1:9", concurrency=2, results_dir=tmp_path, live="off", stream=True
        )
        engine = Engine(load)
        engine.begin()
        assert engine.book is not None
        lane = engine.lane = Lane(
            requests=engine.requests,
            out=engine,
            workers=2,
            host="127.0.0.1",
            port=9,
            timeout_s=5.0,
            send_lag=engine._send_lag,
            stream=True,
            new_reader=engine.book.new_reader,
        )
        wires = []
        for w in lane.workers:
            wire = _StreamWire(lane.loop, w)
            wire.connection_made(_Sink())  # type: ignore[arg-type]
            w.wire, w.ready = wire, time.monotonic()
            wires.append(wire)
            lane.free(w)
        for turn in range(3):
            await asyncio.sleep(0)  # the turn that writes the requests
            for wire, answer in zip(wires, answers, strict=True):
                wire.data_received(answer)
            if turn == 0:
                engine.settle_streams()  # the first pass teaches the piece counts
        engine.settle_streams()
        engine.files.close()

    loop = new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return [orjson.loads(x) for x in (tmp_path / "chat_results.jsonl").read_bytes().splitlines()]


@needs_c
def test_the_engine_writes_counted_streams_at_once_as_the_token_pass_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _engine_lines(tmp_path / "c", "c", monkeypatch)
    slow = _engine_lines(tmp_path / "py", "python", monkeypatch)  # every line through the token pass
    timing = ("ts", "intended_ts", "latency_ms", "intended_latency_ms", "output_tokens_per_s", "run")
    timing += tuple(k for k in fast[0] if k.endswith("_ms") and k not in ("itl_max_ms", "tpot_ms"))
    assert len(fast) == len(slow) == 6
    for a, b in zip(fast, slow, strict=True):
        assert list(a) == list(b)  # the same fields in the same order
        assert {k: v for k, v in a.items() if k not in timing} == {
            k: v for k, v in b.items() if k not in timing
        }
    # No field leaks from one stream's record into the next through the reused template.
    assert [line["content_chunks"] for line in fast] == [3, 2] * 3
    assert [line["completion_tokens_server"] for line in fast] == [3, None] * 3
    assert [line["prompt_tokens_server"] for line in fast] == [4, None] * 3
    assert all(line["token_source"] == "local" and line["output_tokens_per_s"] for line in fast)
