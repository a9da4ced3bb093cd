"""Sentence splitting and the token -> sentence map through character offsets."""

from __future__ import annotations

from hif.explainer.core.segments import COMPLETION, PROMPT, segments, sentence_spans


def test_sentence_spans_split_on_terminators_and_newlines() -> None:
    text = 'One. Two! "Three?" Four\nFive'
    assert [text[s:e] for s, e in sentence_spans(text)] == ["One.", "Two!", '"Three?"', "Four", "Five"]


def test_sentence_spans_start_at_the_completion() -> None:
    text = "Prompt here. A. B."
    assert [text[s:e] for s, e in sentence_spans(text, 13)] == ["A.", "B."]


def _offsets(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for word in text.split():
        start = text.index(word, pos)
        out.append((start, start + len(word)))
        pos = start + len(word)
    return out


def test_tokens_map_to_prompt_and_completion_sentences() -> None:
    prompt, completion = "Why so?", "Because. It is."
    text = prompt + "\n" + completion
    offsets = [(0, 0), *_offsets(text), (0, 0)]  # [CLS] ... [SEP]
    special = [True] + [False] * (len(offsets) - 2) + [True]
    segs = segments(text, len(prompt) + 1, offsets, special)
    assert [(s.role, s.text) for s in segs] == [
        (PROMPT, "Why so?"),
        (COMPLETION, "Because."),
        (COMPLETION, "It is."),
    ]
    assert [s.positions for s in segs] == [(1, 2), (3,), (4, 5)]
    assert [s.index for s in segs] == [0, 1, 2]


def test_leading_space_tokens_belong_to_the_next_sentence() -> None:
    text = "A b. C d."
    offsets = [(0, 1), (1, 3), (3, 4), (4, 6), (6, 8), (8, 9)]  # GPT-2 style: " b", " C" carry the space
    segs = segments(text, 0, offsets, [False] * 6)
    assert [s.positions for s in segs] == [(0, 1, 2), (3, 4, 5)]


def test_segments_without_tokens_are_dropped() -> None:
    text = "Hi.\nA. B."
    offsets = [(0, 2), (2, 3), (4, 5)]  # truncated before "B."
    segs = segments(text, 4, offsets, [False] * 3)
    assert [s.text for s in segs] == ["Hi.", "A"] or [s.text for s in segs] == ["Hi.", "A."]
    assert len(segs) == 2
