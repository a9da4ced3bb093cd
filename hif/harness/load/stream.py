"""Streamed chats (``--stream``): SSE read on the lane's wire, per-request timings, the token pass.

On the wire (inside ``data_received``, once per socket read) the worker's :class:`StreamReader`
takes the read: one clock read, then, in :class:`StreamTimes`, one regex ``findall`` over the
read's complete events for the text of every content delta and ``bytes.find`` for the rarer keys
(no JSON parse on the wire; the content texts are kept for the token pass). Events end at a blank
line, with LF, CRLF or lone-CR line endings. :class:`HttpStreamTimes` frames the HTTP answer with
httptools around it; the C extension's ``SSEReader`` (``_sse.c``, the same steps in C, used when
built; see :func:`reader_factory`) also looks each piece's token count up as it reads.
What counts:

* TTFB: the first byte of the response body;
* TTFT: the first event whose ``delta.content`` is a non-empty string (a role-only first chunk,
  ``"content": ""`` or ``null``, does not count);
* TTFO: the first event carrying any output: content, ``reasoning_content``/``reasoning``, or a
  tool call;
* end-to-end: to the last content event, not to the usage event or ``[DONE]``.

Off the request path, the :class:`StreamBook` counts each content event's tokens with the local
tokenizer (:mod:`hif.tokens`) in one batch per ticker turn, and derives ITL (each gap
between content events divided by the tokens of the later event, counted once per token; the
first content event defines TTFT and its extra tokens add no gap) and TPOT ((last - first content)
/ (output tokens - 1)). Without a tokenizer ITL is not reported and TPOT uses the server's
``usage.completion_tokens``. Once the C reader's shared table knows every piece of a stream (in a
steady run, every stream after the first ticker turn), the same figures come from the table and
the line is written as the stream ends (:meth:`StreamBook.finish`): the tokenizer still never runs
on the request path. docs/load.md defines every figure.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import httptools
import orjson

from hif.errors import ConfigError

if TYPE_CHECKING:
    from hif.harness.stats import IntervalRecorder
    from hif.tokens import TokenCounter

# Inside a JSON string a quote is escaped (\"), so `"content":"x` can only be the key itself.
# The string's body is written unrolled (runs of plain bytes between escapes): ~2x faster in
# ``findall`` than one alternation per byte. It needs one byte at least, so a role-only
# ``"content": ""`` never matches.
_PIECES = re.compile(rb'"content"\s*:\s*"((?:[^"\\]|\\.)[^"\\]*(?:\\.[^"\\]*)*)"')
# A read with no backslash has no escape to step over: no repeated group, which costs sre a
# malloc per match (a quarter of ``findall``'s time in a profile of the runner).
_PLAIN_PIECES = re.compile(rb'"content"\s*:\s*"([^"\\]+)"')
_OUTPUT_KEYS = (b'"reasoning', b'"tool_calls"')
_CLOSING_KEYS = (b'"usage"', b'"explanation"', b'"error"')
_OTHER_OUTPUT = re.compile(rb'"(?:reasoning_content|reasoning)"\s*:\s*"[^"]|"tool_calls"\s*:\s*\[\s*\{')
_ERROR = re.compile(rb'data:\s*\{\s*"error"\s*:')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_EXPLANATION = b'"explanation"'
_DATA = re.compile(rb"\s*data:\s*")

CACHE_PIECES = 200_000  # distinct content pieces whose token counts are kept between token passes

# Histogram tags (also in histograms.hlog); all in milliseconds.
TTFB, TTFT, TTFO = "stream.ttfb", "stream.ttft", "stream.ttfo"
TTFT_INTENDED, TTFO_INTENDED = "stream.ttft_intended", "stream.ttfo_intended"
ITL, TPOT = "stream.itl", "stream.tpot"
STREAM_TAGS = (TTFB, TTFT, TTFO, TTFT_INTENDED, TTFO_INTENDED, ITL, TPOT)
# The wire times StreamReader.stamp appends to their histograms, in the order of its marks.
MARK_TAGS = (TTFB, TTFT, TTFO, TTFT_INTENDED, TTFO_INTENDED)
MARK_KEYS = ("ttfb_ms", "ttft_ms", "ttfo_ms", "intended_ttft_ms", "intended_ttfo_ms")
Marks = tuple[list[float] | None, ...]
# A streamed chat's record fields after the common ones, in the order they are written: stamp's,
# then the token pass's.
STREAM_FIELDS: dict[str, Any] = dict.fromkeys(
    (
        "stream",
        "ttfb_ms",
        "ttft_ms",
        "ttfo_ms",
        "intended_ttft_ms",
        "intended_ttfo_ms",
        "content_chunks",
        "prompt_tokens_server",
        "completion_tokens_server",
        "completion_tokens_local",
        "output_tokens",
        "token_source",
        "itl_max_ms",
        "tpot_ms",
        "output_tokens_per_s",
        "prompt_tokens_local",
    )
)


class StreamTimes:
    """One worker's stream state, reset per request (one object per worker, not per request).

    :meth:`feed` is the wire's httptools ``on_body`` callback itself (no call in between): the
    wire sets :attr:`now` once per socket read, and every event completed in that read arrived
    then.
    """

    __slots__ = (
        "after_cr",
        "content_raw",  # the UTF-8 text of each content event (JSON escapes only where it had one)
        "content_times",  # monotonic milliseconds of each content event (the ITL pass reads ms)
        "error",
        "explanation",
        "first_byte",
        "first_content",
        "first_output",
        "last_content",
        "now",
        "pending",
        "usage",
    )

    def __init__(self) -> None:
        self.now = 0.0
        self.reset()

    def reset(self) -> None:
        self.first_byte = self.first_output = self.first_content = self.last_content = 0.0
        self.content_times: list[float] = []
        self.content_raw: list[bytes] = []
        self.usage: bytes | None = None
        self.explanation: bytes | None = None
        self.error: bytes | None = None
        self.pending = b""  # an event not yet complete at the end of a read (or a non-SSE body)
        self.after_cr = False  # the last body byte was a CR: an LF opening the next read ends its line

    @property
    def content_chunks(self) -> int:
        return len(self.content_times)

    def token_figures(self) -> None:
        return None  # no shared piece counts here: StreamBook's token pass counts every stream

    def fill(
        self, line: dict[str, Any], itl: list[float], tpot: list[float], latency_ms: Any, prompt: Any
    ) -> bool:
        return False  # as token_figures: the token pass fills every stream's record

    def feed(self, body: bytes) -> None:
        """Body bytes of one socket read, read at :attr:`now` (monotonic seconds).

        Every event completed in the read arrived then, so the whole read is searched at once:
        one C-level ``findall`` returns the text of every content delta (role-only ``""`` and
        ``null`` do not match), and only events naming a rarer key are looked at one by one:
        reasoning and tool calls only until the first output, usage, the explanation and an error
        only from the read's last content event on.
        """
        now = self.now
        if not self.first_byte:
            self.first_byte = now
        if self.after_cr or b"\r" in body:  # one memchr on the usual LF-only read
            body = self._lf(body)
        buf = self.pending + body if self.pending else body
        end = buf.rfind(b"\n\n")
        if end < 0:
            self.pending = buf
            return
        self.pending = buf[end + 2 :]
        escaped = buf.find(b"\\", 0, end) >= 0
        pieces = (_PIECES if escaped else _PLAIN_PIECES).findall(buf, 0, end)
        tail = 0
        if pieces:
            if not self.first_content:
                self.first_content = now
                if not self.first_output:
                    self.first_output = now
            self.last_content = now
            self.content_times.extend([now * 1000.0] * len(pieces))
            if escaped:  # decode the pieces holding an escape
                pieces = [_unescape(p) if b"\\" in p else p for p in pieces]
            self.content_raw.extend(pieces)
            # Usage, the explanation and an error close a stream, so they are looked for from the
            # read's last content event on (a server that puts usage in every chunk has it there
            # too): the rest of the read was content.
            last = buf.rfind(b"\n\n", 0, buf.rfind(b'"content"', 0, end))
            tail = last + 2 if last >= 0 else 0
        if not self.first_output:  # reasoning or a tool call matter only before any output
            for key in _OUTPUT_KEYS:
                i = buf.find(key, 0, end)
                if i >= 0:
                    self._each(buf, key, i, end, self._output)
        for key in _CLOSING_KEYS:  # bytes.find per key: ~10x faster here than one regex alternation
            i = buf.find(key, tail, end)
            if i >= 0:
                self._each(buf, key, i, end, self._closing)

    def _lf(self, body: bytes) -> bytes:
        """SSE line endings made LF: a CRLF pair (also one split across reads) and a lone CR each
        become one LF. A raw CR cannot sit inside a JSON string, so only line ends change."""
        if self.after_cr and body.startswith(b"\n"):
            body = body[1:]
        self.after_cr = body.endswith(b"\r")
        return body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _each(self, buf: bytes, key: bytes, i: int, end: int, seen: Callable[[bytes, float], None]) -> None:
        """``seen`` for each event of ``buf[:end]`` naming ``key``, the first at ``i``."""
        while i >= 0:
            start = buf.rfind(b"\n\n", 0, i)
            start = start + 2 if start >= 0 else 0
            stop = buf.find(b"\n\n", i, end + 2)
            stop = end if stop < 0 else stop
            seen(buf[start:stop], self.now)
            i = buf.find(key, stop, end)

    def _output(self, ev: bytes, now: float) -> None:
        if not self.first_output and _OTHER_OUTPUT.search(ev) is not None:
            self.first_output = now

    def _closing(self, ev: bytes, _now: float) -> None:
        if _ERROR.match(ev) is not None:
            self.error = _payload(ev)
        elif _EXPLANATION in ev:
            self.explanation = _payload(ev)
        if _USAGE.search(ev) is not None:
            self.usage = ev


# See StreamReader.token_figures.
TokenFigures = tuple[int, int, list[float], float | None, float, float, int | None, int | None]


class StreamReader(Protocol):
    """What the lane and the engine read off a streamed answer: :class:`HttpStreamTimes` in Python,
    or ``SSEReader`` from the C extension (``_sse.c``), which gives the same figures faster."""

    first_byte: float
    first_output: float
    first_content: float
    last_content: float

    @property
    def content_times(self) -> list[float]: ...
    @property
    def content_raw(self) -> list[bytes]: ...
    @property
    def content_chunks(self) -> int: ...
    @property
    def usage(self) -> bytes | None: ...
    @property
    def explanation(self) -> bytes | None: ...
    @property
    def error(self) -> bytes | None: ...
    @property
    def pending(self) -> bytes: ...
    @property
    def status(self) -> int: ...
    @property
    def keep_alive(self) -> bool: ...
    @property
    def body(self) -> bytes: ...

    def reset(self) -> None: ...

    def token_figures(self) -> TokenFigures | None:
        """(local tokens, zero gaps, other gaps, ITL max, first and last content ms, the usage's
        prompt and completion tokens) when the reader counted the stream's tokens itself, else
        None (:class:`StreamBook` counts them)."""
        ...

    def stamp(self, line: dict[str, Any], sent: float, intended: float, done: float, marks: Marks) -> float:
        """:func:`stamp`, and each of its figures appended to its list in ``marks`` (the pending
        lists of the histograms :data:`MARK_TAGS` names, None where not recorded); returns the
        end-to-end end."""
        ...

    def fill(
        self, line: dict[str, Any], itl: list[float], tpot: list[float], latency_ms: Any, prompt: Any
    ) -> bool:
        """Where :meth:`token_figures` would give figures: the record's token fields written into
        ``line`` (``prompt``: its local prompt tokens), ITL gaps that are not zero and TPOT onto
        the lists, the counters summed in the shared table; True. Else False, nothing touched."""
        ...

    def read(self, data: bytes, now: float) -> bool:
        """One socket read of the answer (head and body bytes as they came), read at ``now``
        (monotonic seconds); True once the answer is whole. Unparseable HTTP raises ValueError."""
        ...

    def eof(self) -> bool:
        """The connection closed: True when that ends the answer (a body delimited by close)."""
        ...


class HttpStreamTimes(StreamTimes):
    """The pure-Python :class:`StreamReader`: httptools frames the answer, :class:`StreamTimes`
    scans its body.

    httptools hands each HTTP chunk to a bound ``list.append`` (its ``on_body``, bound once when
    the parser is made: no Python frame per chunk); after the read, :meth:`feed` reads all of them
    in one go. An answer of 400 or more is a JSON envelope with no blank line, so it stays whole in
    ``pending``. The parser lives as long as its answers end cleanly; after a cut or an error the
    next request gets a new one.
    """

    __slots__ = ("_done", "_parser", "_pieces", "_raw", "keep_alive", "on_body", "status")

    def __init__(self, counts: object = None) -> None:  # counts: the C reader's; unused here
        self._pieces: list[bytes] = []
        self.on_body = self._pieces.append  # bound before the parser looks it up
        self._parser: httptools.HttpResponseParser | None = None
        self._done = False
        self.keep_alive = False
        super().__init__()

    def reset(self) -> None:
        super().reset()
        if self._parser is None or not self._done or not self.keep_alive:
            self._parser = httptools.HttpResponseParser(self)
        self._done = False
        self._pieces.clear()
        self._raw: list[bytes] = []  # head bytes, read only at an early EOF
        self.status, self.keep_alive = 0, False

    def stamp(self, line: dict[str, Any], sent: float, intended: float, done: float, marks: Marks) -> float:
        end = stamp(line, self, sent, intended, done)
        for mark, key in zip(marks, MARK_KEYS, strict=True):
            ms = line[key]
            if mark is not None and ms is not None:
                mark.append(ms)
        return end

    def on_message_complete(self) -> None:  # httptools, inside feed_data
        self._done = True
        parser = self._parser
        assert parser is not None
        # Read here: once feed_data returns, the parser has moved on to the next message.
        self.status, self.keep_alive = parser.get_status_code(), parser.should_keep_alive()

    def read(self, data: bytes, now: float) -> bool:
        if self._done:
            return False  # bytes after a whole answer: not ours
        self.now = now
        if not self.first_byte:
            self._raw.append(data)
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._done = False
            raise ValueError(str(exc)) from exc
        pieces = self._pieces
        if pieces:
            self.feed(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            pieces.clear()
        if self._done:
            self._finish()
            return True
        return False

    def eof(self) -> bool:
        raw = b"".join(self._raw)
        end = raw.find(b"\r\n\r\n")
        if self._done or end < 0 or _framed(raw[:end]):
            return False
        assert self._parser is not None
        self.status, self.keep_alive = self._parser.get_status_code(), False
        self._done = True
        self._parser = None  # it still waits for the body's end: the next request gets a new one
        self._finish()
        return True

    def _finish(self) -> None:
        if self.status < 400 and self.pending:  # a last event without its blank line
            self.feed(b"\n\n")

    @property
    def body(self) -> bytes:
        """The record's body: the error envelope (400 or more), else the explanation event."""
        return self.pending if self.status >= 400 else self.explanation or b""


def _framed(head: bytes) -> bool:
    """Whether a raw header block declares a length or chunking (so EOF is not a valid end)."""
    block = head.lower()
    if b"\r\ncontent-length:" in block:
        return True
    return any(line.startswith(b"transfer-encoding:") and b"chunked" in line for line in block.split(b"\r\n"))


READER_ENV = "HIF_SSE_READER"


def reader_factory(choice: str | None = None) -> Callable[..., StreamReader]:
    """The reader class streamed chats use: the C ``SSEReader`` when the extension is built, else
    :class:`HttpStreamTimes`. ``HIF_SSE_READER`` (``auto``, ``c``, ``python``) picks one, so
    tests and benches can run both; ``c`` without the extension is a configuration error."""
    choice = choice or os.environ.get(READER_ENV, "auto")
    if choice not in ("auto", "c", "python"):
        raise ConfigError(READER_ENV, f"expected auto, c or python, got {choice!r}")
    if choice == "python":
        return HttpStreamTimes
    try:
        from hif.harness.load._sse import SSEReader
    except ImportError as exc:
        if choice == "c":
            raise ConfigError(
                READER_ENV, f"the C SSE reader is not built ({exc}); run: python setup.py build_ext --inplace"
            ) from exc
        return HttpStreamTimes
    return SSEReader


def _payload(event: bytes) -> bytes:
    """The JSON after ``data:`` of one SSE event."""
    if event.startswith(b"data: "):
        return event[6:]
    m = _DATA.match(event)
    return event[m.end() :] if m else event


def _unescape(piece: bytes) -> bytes:
    """A JSON string's raw bytes (between its quotes) as the UTF-8 text they encode."""
    try:
        return str(orjson.loads(b'"' + piece + b'"')).encode()
    except orjson.JSONDecodeError:
        return piece


def usage_tokens(raw: bytes | None) -> tuple[int | None, int | None]:
    """(prompt_tokens, completion_tokens) from the raw usage event, None where absent."""
    if raw is None:
        return None, None
    prompt, completion = _PROMPT_TOKENS.search(raw), _COMPLETION_TOKENS.search(raw)
    return (int(prompt.group(1)) if prompt else None, int(completion.group(1)) if completion else None)


class StreamBook:
    """Streamed chats between their last byte and their JSONL line: the deferred token pass.

    The engine :meth:`add` s each finished stream with its record, already holding the times the
    wire saw; :meth:`settle` (ticker turn, bucket close, run end) counts tokens in one batch,
    records ITL and TPOT, fills the token fields and writes the lines.

    With the C reader, every piece's count also goes into a table the readers share
    (``PieceCounts``): a reader that found all of a stream's pieces there fills the record's token
    fields itself (``fill``: the ITL loop below and :meth:`_known`, in C), so in steady state the
    engine writes each line as its stream ends (:meth:`finish`) and the pass only adds the summed
    counters; a stream with an unknown piece, and every one after it until the next pass (so lines
    keep their order), takes the path below.
    """

    def __init__(
        self,
        tokenizer: TokenCounter | None,
        prompt_tokens: dict[bytes, int],
        reader: Callable[..., StreamReader] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens  # request bytes -> local prompt count (counted at start-up)
        # (line, token_figures or None, content times, content pieces, usage event, request bytes)
        self._pending: list[tuple[dict[str, Any], Any, list[float], list[bytes], bytes | None, bytes]] = []
        self._cache: dict[bytes, int] = {}
        self._reader = reader or reader_factory()
        self.table: Any = None  # the C readers' shared piece counts
        if tokenizer is not None and getattr(self._reader, "__module__", "") == "hif.harness.load._sse":
            from hif.harness.load._sse import PieceCounts

            self.table = PieceCounts()
        # Summed over the streams filled since the last pass (see settle).
        self._zeros = self._compared = self._mismatched = self._output_total = 0
        # A recorder's ITL and TPOT intervals, from bind() (the engine's, before its first chat)
        # or settle(); until then nothing is recorded into them.
        self._itl: list[float] = []
        self._tpot: list[float] = []

    def new_reader(self) -> StreamReader:
        """A reader for one worker, sharing this book's piece counts."""
        return self._reader(self.table) if self.table is not None else self._reader()

    def bind(self, recorder: IntervalRecorder) -> None:
        """Point the lines written at once (:meth:`finish`) at ``recorder``'s current ITL and TPOT
        intervals (the engine calls this after each rotation, as it re-binds its own appenders)."""
        self._itl = recorder.pending(ITL)
        self._tpot = recorder.pending(TPOT)

    def finish(
        self, line: dict[str, Any], st: StreamReader, data: bytes, write: Callable[[Any], None]
    ) -> bool:
        """Fill and write ``line`` now when the C reader counted the stream's tokens itself and no
        stream waits for the pass before it (lines stay in the order their streams ended); else
        False, and the caller :meth:`add` s a copy. Nothing here calls the tokenizer, so the
        request path still never pays for a count: the reader's ``fill`` is :meth:`_known` in C
        (one call: the token fields, ITL, TPOT, the counters summed in the shared table)."""
        if self._pending or self.table is None:
            return False
        if not st.fill(line, self._itl, self._tpot, line["latency_ms"], self.prompt_tokens.get(data)):
            return False
        write(line)
        return True

    def add(self, line: dict[str, Any], st: StreamReader, data: bytes) -> None:
        figures = st.token_figures()
        if figures is not None:
            self._pending.append((line, figures, _NO_TIMES, _NO_PIECES, st.usage, data))
        else:
            self._pending.append((line, None, st.content_times, st.content_raw, st.usage, data))

    def __len__(self) -> int:
        return len(self._pending)

    def settle(
        self, recorder: IntervalRecorder, counts: Any, write: Callable[[dict[str, Any]], None]
    ) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._settle(pending, recorder, counts, write)
        # The counters of every stream filled since the last pass, summed: one histogram call and
        # three counter updates per pass, not per stream.
        if self.table is not None:
            zeros, compared, mismatched, output = self.table.take_sums()
            self._zeros += zeros
            self._compared += compared
            self._mismatched += mismatched
            self._output_total += output
        if self._zeros:
            recorder.record_count(ITL, 0.0, self._zeros)
        for key, n in (
            ("stream_usage_compared", self._compared),
            ("stream_usage_mismatch", self._mismatched),
            ("stream_output_tokens", self._output_total),
        ):
            if n:
                counts[key] += n
        self._zeros = self._compared = self._mismatched = self._output_total = 0

    def _settle(
        self,
        pending: list[tuple[dict[str, Any], Any, list[float], list[bytes], bytes | None, bytes]],
        recorder: IntervalRecorder,
        counts: Any,
        write: Callable[[dict[str, Any]], None],
    ) -> None:
        self.bind(recorder)
        itl, tpot = self._itl, self._tpot.append
        per_chunk: list[list[int]] | None = None
        if self.tokenizer is not None:
            per_chunk = self._counts([raws for _l, figures, _t, raws, _u, _d in pending if figures is None])
        slow = 0
        prompt_tokens = self.prompt_tokens
        for line, figures, times, _raws, usage, data in pending:
            if figures is not None:
                self._known(line, figures, data)
            else:
                chunk_tokens = None if per_chunk is None else per_chunk[slow]
                slow += 1
                self._zeros += settle_one(line, times, chunk_tokens, usage, itl, tpot, counts)
                line["prompt_tokens_local"] = prompt_tokens.get(data)
            write(line)

    def _known(self, line: dict[str, Any], figures: TokenFigures, data: bytes) -> None:
        """:func:`fill_tokens` for a stream whose tokens the reader counted, with the counters
        summed per pass (this runs once per streamed chat); tests check the two agree."""
        local, z, gaps, itl_max, first_ms, last_ms, prompt_srv, completion_srv = figures
        if gaps:
            self._itl.extend(gaps)
        self._zeros += z
        line["prompt_tokens_server"], line["completion_tokens_server"] = prompt_srv, completion_srv
        line["completion_tokens_local"] = line["output_tokens"] = local
        line["token_source"] = "local"
        if completion_srv is not None:
            self._compared += 1
            self._mismatched += local != completion_srv
        self._output_total += local
        line["itl_max_ms"] = itl_max
        tpot_ms = None
        if local > 1 and line["content_chunks"] > 1:
            tpot_ms = (last_ms - first_ms) / (local - 1)
            self._tpot.append(tpot_ms)
        line["tpot_ms"] = tpot_ms
        latency_s = (line["latency_ms"] or 0.0) / 1000.0
        line["output_tokens_per_s"] = round(local / latency_s, 3) if local and latency_s > 0 else None
        line["prompt_tokens_local"] = self.prompt_tokens.get(data)

    def _counts(self, streams: list[list[bytes]]) -> list[list[int]]:
        """Tokens per content piece. Pieces repeat (a stream is made of a vocabulary's tokens), so
        each distinct piece is tokenized once and then read from a bounded cache: the tokenizer
        costs ~3 us per token here, a cache hit ~0.05 us."""
        cache = self._cache
        if len(cache) > CACHE_PIECES:
            cache.clear()
            if self.table is not None:
                self.table.clear()
        get = cache.__getitem__
        try:  # after warm-up every piece is a hit: no set of the batch's pieces to build
            return [list(map(get, pieces)) for pieces in streams]
        except KeyError:
            pass
        missing = list(set(itertools.chain.from_iterable(streams)).difference(cache))
        if missing:
            assert self.tokenizer is not None
            texts = [p.decode("utf-8", "replace") for p in missing]
            found = self.tokenizer.count(texts)
            cache.update(zip(missing, found, strict=True))
            if self.table is not None:
                self.table.update(missing, list(found))
        return [list(map(get, pieces)) for pieces in streams]


_NO_TIMES: list[float] = []  # never appended to
_NO_PIECES: list[bytes] = []


def settle_one(
    line: dict[str, Any],
    times: list[float],
    chunk_tokens: list[int] | None,
    usage: bytes | None,
    itl: list[float],
    tpot_out: Callable[[float], None],
    counts: Any,
) -> int:
    """Token fields, ITL and TPOT of one stream (``times`` monotonic milliseconds of content events).

    Returns the number of zero gaps the caller records into ITL itself (one histogram call per
    batch): a stream that arrived in one read has nothing else. ``SSEReader.token_figures`` in
    _sse.c is the same loop in C."""
    itl_max = None
    zeros = 0
    n = len(times)
    if chunk_tokens is not None and n > 1 and chunk_tokens.count(1) - (chunk_tokens[0] == 1) == n - 1:
        # One token a chunk (after the first). Times never decrease, so equal ends mean every
        # event came in one read: n - 1 gaps of zero.
        if times[0] == times[-1]:
            zeros = n - 1
            itl_max = 0.0
        else:
            gaps = list(map(float.__sub__, times[1:], times))  # the gaps, in C
            itl.extend(gaps)
            itl_max = max(gaps)
    elif chunk_tokens is not None and n > 1:
        prev = times[0]
        for t, k in zip(times[1:], chunk_tokens[1:], strict=True):
            if k <= 0:
                continue  # a whitespace-only piece: its gap joins the next token's
            gap_ms = (t - prev) / k
            itl.extend([gap_ms] * k)
            itl_max = gap_ms if itl_max is None or gap_ms > itl_max else itl_max
            prev = t
    local = sum(chunk_tokens) if chunk_tokens is not None else None
    first, last = (times[0], times[-1]) if n > 1 else (0.0, 0.0)
    fill_tokens(line, local, usage_tokens(usage), itl_max, n, first, last, tpot_out, counts)
    return zeros


def fill_tokens(
    line: dict[str, Any],
    local: int | None,
    usage: tuple[int | None, int | None],
    itl_max: float | None,
    events: int,
    first_ms: float,
    last_ms: float,
    tpot_out: Callable[[float], None],
    counts: Any,
) -> None:
    """The token fields of one stream's record, and its TPOT (``usage``: the server's prompt and
    completion tokens; ``events`` content events, the first and last at ``first_ms`` and
    ``last_ms``). :meth:`StreamBook.settle` has a copy inline for the streams the C reader counted,
    checked against this one by tests/unit/harness/test_sse_reader.py."""
    prompt_srv, completion_srv = usage
    line["prompt_tokens_server"], line["completion_tokens_server"] = prompt_srv, completion_srv
    line["completion_tokens_local"] = local
    output = local if local is not None else completion_srv
    line["output_tokens"] = output
    source = "server" if completion_srv is not None else None
    line["token_source"] = "local" if local is not None else source
    if local is not None and completion_srv is not None:
        counts["stream_usage_compared"] += 1
        if local != completion_srv:
            counts["stream_usage_mismatch"] += 1
    if output:
        counts["stream_output_tokens"] += output
    line["itl_max_ms"] = itl_max
    tpot = None
    if output is not None and output > 1 and events > 1:
        tpot = (last_ms - first_ms) / (output - 1)
        tpot_out(tpot)
    line["tpot_ms"] = tpot
    sent_to_last_s = (line["latency_ms"] or 0.0) / 1000.0
    line["output_tokens_per_s"] = round(output / sent_to_last_s, 3) if output and sent_to_last_s > 0 else None


def stamp(line: dict[str, Any], st: StreamReader, sent: float, intended: float, done: float) -> float:
    """The wire's times into the record; returns the end-to-end end (the last content event).
    A time of 0 (never seen) gives null."""
    first_byte, first_content, first_output = st.first_byte, st.first_content, st.first_output
    line["stream"] = True
    line["ttfb_ms"] = (first_byte - sent) * 1000.0 if first_byte else None
    line["ttft_ms"] = (first_content - sent) * 1000.0 if first_content else None
    line["ttfo_ms"] = (first_output - sent) * 1000.0 if first_output else None
    line["intended_ttft_ms"] = (first_content - intended) * 1000.0 if first_content else None
    line["intended_ttfo_ms"] = (first_output - intended) * 1000.0 if first_output else None
    line["content_chunks"] = st.content_chunks
    return st.last_content or done
