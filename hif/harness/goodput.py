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

from hif.harness.gates import RUNBOOK_SLOS

# the runbook's example targets: the reference when a run was not gated
REFERENCE_CHAT_MS = RUNBOOK_SLOS["chat_p95_ms"]
REFERENCE_SENTENCE_MS = RUNBOOK_SLOS["sentence_p95_ms"]
REFERENCE_TOKEN_MS = RUNBOOK_SLOS["token_p95_ms"]
_TARGET_OF_GATE = {"chat_p95_ms": "chat_ms", "sentence_p95_ms": "sentence_ms", "token_p95_ms": "token_ms"}
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
        return cls.from_slos(
            {
                g["name"]: float(g["threshold"])
                for g in gates
                if isinstance(g.get("name"), str) and isinstance(g.get("threshold"), int | float)
            }
        )

    @classmethod
    def from_slos(cls, slos: Mapping[str, float]) -> GoodputTargets:
        """Targets from thresholds by gate name (``--slo``'s parse); the reference for the rest.

        >>> GoodputTargets.from_slos({"chat_p95_ms": 300.0, "error_rate": 0.01}).chat_ms
        300.0
        """
        given = {_TARGET_OF_GATE[k]: float(v) for k, v in slos.items() if k in _TARGET_OF_GATE}
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


class Ledger:
    """Goodput counted while a run goes on (the load runner's summary), by the same definition.

    A chat that asked for no explanation is judged when it is answered; an attached one whose chat
    half was good waits for its trace's terminal record. A trace can end inside the chat's own
    bookkeeping (a state already terminal in the chat answer), before the caller knows its id, so
    a good trace nobody waits for is held for :meth:`attached` to collect just after.

    >>> book = Ledger(GoodputTargets())
    >>> book.attached("t1", chat_ok=True)
    False
    >>> book.trace("t1", state="complete", granularity="sentence", sla_ms=900.0)
    True
    """

    def __init__(self, targets: GoodputTargets) -> None:
        self.targets = targets
        self.chat_ms = targets.chat_ms  # read on the runner's hot path
        self._waiting: set[str] = set()
        self._early: str | None = None

    def trace(
        self, trace_id: str | None, *, state: str, granularity: str | None, sla_ms: float | None
    ) -> bool:
        """A trace ended: True when it completes a good chat (count it now)."""
        good = explanation_good(state=state, granularity=granularity, sla_ms=sla_ms, targets=self.targets)
        if trace_id is None:
            return False
        if trace_id in self._waiting:
            self._waiting.discard(trace_id)
            return good
        if good:
            self._early = trace_id
        return False

    def attached(self, trace_id: str | None, *, chat_ok: bool) -> bool:
        """An attached chat was answered (``chat_ok``: its half of the definition held): True when
        its trace had already ended well (count it now); else it waits for :meth:`trace`."""
        early, self._early = self._early, None
        if not chat_ok or trace_id is None:
            return False
        if early == trace_id:
            return True
        self._waiting.add(trace_id)
        return False


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
