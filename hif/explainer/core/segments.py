"""Split an explained text into segments: the prompt, then each sentence of the completion.

Tokens map to segments through the tokenizer's character offsets, so any tokenizer works; a
segment that lost all its tokens to truncation is dropped.
"""

from __future__ import annotations

import dataclasses
import re

PROMPT = "prompt"
COMPLETION = "completion"
# A sentence ends at . ! ? (maybe then a closing quote/bracket) before whitespace, or at a newline.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+|\n+")


@dataclasses.dataclass(frozen=True, slots=True)
class Segment:
    index: int
    role: str  # PROMPT | COMPLETION
    text: str
    char_start: int
    char_end: int
    positions: tuple[int, ...]  # token positions inside this segment


def sentence_spans(text: str, start: int = 0) -> list[tuple[int, int]]:
    """Character spans of the sentences in ``text[start:]`` (absolute offsets), blanks dropped."""
    spans, begin = [], start
    for match in _SENTENCE_END.finditer(text, start):
        spans.append((begin, match.start()))
        begin = match.end()
    spans.append((begin, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def segments(
    text: str, completion_char: int, offsets: list[tuple[int, int]], special: list[bool]
) -> list[Segment]:
    """The prompt as one segment, then one per completion sentence, each with its token positions."""
    spans: list[tuple[str, int, int]] = []
    if completion_char > 0:
        spans.append((PROMPT, 0, completion_char))
    spans += [(COMPLETION, s, e) for s, e in sentence_spans(text, completion_char)]
    owned: list[list[int]] = [[] for _ in spans]
    which = 0
    for pos, (start, end) in enumerate(offsets):
        if special[pos] or end <= start:
            continue
        anchor = end - 1  # the token's last char: GPT-2-style tokens start at the space before a word
        while which + 1 < len(spans) and anchor >= spans[which + 1][1]:
            which += 1
        owned[which].append(pos)
    kept = [(span, pos) for span, pos in zip(spans, owned, strict=True) if pos]
    return [
        Segment(i, role, text[s:e].strip(), s, e, tuple(pos)) for i, ((role, s, e), pos) in enumerate(kept)
    ]
