"""SSE events classified on the wire: scripted byte chunks fed to StreamTimes at known times."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hif.harness.load.stream import ITL, StreamBook, StreamTimes, usage_tokens
from hif.harness.stats import IntervalRecorder, LatencyHistogram


def feed_all(pieces: list[tuple[bytes, float]]) -> StreamTimes:
    st = StreamTimes()
    for data, t in pieces:
        st.now = t
        st.feed(data)
    return st


def test_role_only_empty_and_null_content_are_not_tokens() -> None:
    st = feed_all(
        [
            (b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n', 1.0),
            (b'data: {"choices":[{"delta":{"content":null}}]}\n\n', 2.0),
            (b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n', 3.0),
        ]
    )
    assert st.first_byte == 1.0 and st.first_content == 3.0 and st.first_output == 3.0


def test_reasoning_and_tool_calls_are_output_but_not_content() -> None:
    st = feed_all(
        [
            (b'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n', 1.0),
            (b'data: {"choices":[{"delta":{"reasoning":"hmm"}}]}\n\n', 2.0),
            (b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n', 3.0),
        ]
    )
    assert st.first_output == 1.0 and st.first_content == 3.0


def test_an_event_split_across_reads_counts_when_it_completes() -> None:
    st = feed_all(
        [(b'data: {"choices":[{"delta":{"con', 1.0), (b'tent":"a \\"q\\""}}]}\n', 2.0), (b"\n", 3.0)]
    )
    assert st.content_times == [3000.0] and st.content_raw == [b'a "q"']


def test_quoted_keys_inside_content_are_not_keys() -> None:
    st = feed_all(
        [(b'data: {"choices":[{"delta":{"reasoning_content":"say \\"content\\":\\"x"}}]}\n\n', 1.0)]
    )
    assert st.first_content == 0.0 and st.first_output == 1.0


def test_usage_explanation_error_and_done() -> None:
    st = feed_all(
        [
            (b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}\n\n', 1.0),
            (b'data: {"choices":[],"explanation":{"trace_id":"t1","state":"queued"}}\n\n', 2.0),
            (b'data: {"error":{"message":"boom"}}\n\ndata: [DONE]\n\n', 3.0),
        ]
    )
    assert usage_tokens(st.usage) == (5, 3)
    assert st.explanation is not None and st.explanation.startswith(b'{"choices"')
    assert st.error == b'{"error":{"message":"boom"}}' and not st.content_times and not st.pending


def test_many_events_in_one_read_with_escapes_and_null_usage() -> None:
    read = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}],"usage":null}\n\n'
        b'data: {"choices":[{"delta":{"reasoning_content":"hm"}}],"usage":null}\n\n'
        b'data: {"choices":[{"delta":{"content":"a\\\\b \\"c\\""}}],"usage":null}\n\n'
        b'data: {"choices":[{"delta":{"content":" d"}}],"usage":null}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":4}}\n\n'
        b'data: {"choices":[{"delta":{"cont'
    )
    st = feed_all([(read, 5.0), (b'ent":"e"}}]}\n\ndata: [DONE]\n\n', 6.0)])
    assert st.first_output == st.first_content == 5.0 and st.last_content == 6.0
    assert st.content_times == [5000.0, 5000.0, 6000.0]
    assert st.content_raw == [b'a\\b "c"', b" d", b"e"]
    assert usage_tokens(st.usage) == (2, 4) and st.error is None and not st.pending


def test_usage_in_every_chunk_keeps_the_last() -> None:
    """A server sending usage with every chunk (continuous usage): the last one counts, also when
    it rides on the read's last content event."""
    read = b"".join(
        b'data: {"choices":[{"delta":{"content":"t%d"}}],'
        b'"usage":{"prompt_tokens":2,"completion_tokens":%d}}\n\n' % (i, i + 1)
        for i in range(5)
    )
    st = feed_all([(read, 1.0)])
    assert st.content_raw == [b"t0", b"t1", b"t2", b"t3", b"t4"] and usage_tokens(st.usage) == (2, 5)


def test_reasoning_and_content_in_one_read_share_its_time() -> None:
    read = (
        b'data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    )
    st = feed_all([(b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n', 1.0), (read, 2.0)])
    assert st.first_byte == 1.0 and st.first_output == st.first_content == 2.0


class _OneTokenEach:
    def count(self, texts: list[str]) -> list[int]:
        return [1 for _ in texts]


def _settled(reads: list[tuple[bytes, float]]) -> tuple[dict[str, Any], LatencyHistogram]:
    st = feed_all(reads)
    book = StreamBook(_OneTokenEach(), {})  # type: ignore[arg-type]
    line: dict[str, Any] = {"latency_ms": 100.0}
    book.add(line, st, b"req")
    recorder = IntervalRecorder(0.0)
    counts: Counter[str] = Counter()
    book.settle(recorder, counts, lambda _line: None)
    (itl,) = [iv.histogram for iv in recorder.rotate(1.0) if iv.tag == ITL]
    return line, itl


def _event(text: bytes) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % text


def test_a_stream_in_one_read_has_zero_gaps_counted_once_per_token() -> None:
    line, itl = _settled([(b"".join(_event(b"w%d" % i) for i in range(8)), 1.0)])
    assert itl.count == 7 and itl.percentile(100) == 0.0
    assert line["itl_max_ms"] == 0.0 and line["tpot_ms"] == 0.0 and line["output_tokens"] == 8


def test_reads_apart_give_their_gaps() -> None:
    reads = [(_event(b"a") + _event(b"b"), 1.0), (_event(b"c"), 1.05), (_event(b"d"), 1.15)]
    line, itl = _settled(reads)
    assert itl.count == 3 and itl.percentile(0) == 0.0
    assert abs(itl.percentile(100) - 100.0) < 0.2 and abs(line["itl_max_ms"] - 100.0) < 1e-6
    assert abs(line["tpot_ms"] - 150.0 / 3) < 1e-6
