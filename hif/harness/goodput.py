"""Goodput: the one definition every report, gate and later tool uses.

A chat counts toward goodput when it succeeded (2xx, no error class) within the chat latency
target and, when it asked for an explanation, that explanation completed within its granularity's
target. The denominator is every chat, dropped and failed ones included. Targets are the run's
gates when it was gated, else the runbook's reference targets (chat p95 500 ms, sentence 1.5 s,
token 3.5 s): the same numbers the SLO table shows as reference lines.

>>> t = GoodputTargets()
>>> chat_good(status=200, error_class=None, latency_ms=120.0, targets=t)
True
>>> explanation_good(state="complete", granularity="token", sla_ms=3600.0, targets=t)
False

Explanation records and chat records are written apart (one line per trace, one per chat), so a
reader joins them on the trace id: :func:`trace_key` turns an id into a 64-bit integer that is the
same in every process (``hash()`` of a str is salted per process), so the set of good traces can be
handed to the report's scan workers cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

# the runbook's example targets: the reference when a run was not gated
REFERENCE_CHAT_MS = 500.0
REFERENCE_SENTENCE_MS = 1500.0
REFERENCE_TOKEN_MS = 3500.0
DEFINITION = (
    "chats that succeeded within the chat latency target and, when an explanation was attached, "
    "whose explanation completed within its granularity's target; denominator: all chats"
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GoodputTargets:
    chat_ms: float = REFERENCE_CHAT_MS
    sentence_ms: float = REFERENCE_SENTENCE_MS
    token_ms: float = REFERENCE_TOKEN_MS
    source: str = "reference"  # "gates" when any target came from the run's gates

    def for_granularity(self, granularity: str | None) -> float:
        return self.token_ms if granularity == "token" else self.sentence_ms

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_gates(cls, gates: Iterable[Mapping[str, Any]]) -> GoodputTargets:
        """Targets from SLO gates (``{"name": "chat_p95_ms", "threshold": 400}``...); the
        reference for each target no gate names."""
        names = {"chat_p95_ms": "chat_ms", "sentence_p95_ms": "sentence_ms", "token_p95_ms": "token_ms"}
        given = {
            names[g["name"]]: float(g["threshold"])
            for g in gates
            if g.get("name") in names and isinstance(g.get("threshold"), int | float)
        }
        return cls(**given, source="gates" if given else "reference")


def chat_good(
    *, status: int, error_class: str | None, latency_ms: float | None, targets: GoodputTargets
) -> bool:
    """The chat half of the definition: answered 2xx, no error, within the chat target."""
    return (
        200 <= status < 300
        and error_class is None
        and latency_ms is not None
        and latency_ms <= targets.chat_ms
    )


def explanation_good(
    *, state: str, granularity: str | None, sla_ms: float | None, targets: GoodputTargets
) -> bool:
    """The explanation half: complete, within its granularity's target."""
    return state == "complete" and sla_ms is not None and sla_ms <= targets.for_granularity(granularity)


def trace_key(trace_id: str) -> int:
    """A stable 63-bit key of a trace id (fits numpy int64 and pickles small)."""
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=8).digest(), "big") >> 1


def rates(good: int, chats: int, seconds: float) -> dict[str, Any]:
    """``goodput`` (count), ``goodput_rps`` and ``goodput_share`` (null without chats/time)."""
    return {
        "goodput": good,
        "goodput_rps": good / seconds if seconds > 0 else None,
        "goodput_share": good / chats if chats else None,
    }
