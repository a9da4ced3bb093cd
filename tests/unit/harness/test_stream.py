"""SSE events classified on the wire: scripted byte chunks fed to StreamTimes at known times."""

from __future__ import annotations

from hif.harness.load.stream import StreamTimes, usage_tokens


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
