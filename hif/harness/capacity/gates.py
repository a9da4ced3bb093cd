"""The search's gates, read through one adapter over the load runner's SLO syntax.

Names, directions and the ``--slo`` syntax come from the gate registry (:mod:`hif.harness.gates`),
as for the load runner. A step is judged on its own files, so the search takes the registry's gates
it can recompute from them: every latency percentile with an HDR tag (chat, intended, TTFB, TTFT,
TTFO, ITL, TPOT, sentence and token SLA), the error and expired/failed shares, and the goodput
floors (``goodput_rps>=``, ``goodput_share>=``). Each gate knows how many samples its figure needs
before a verdict means anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from hif.errors import ConfigError
from hif.harness import gates as registry
from hif.harness.load import stream

# Samples beyond a percentile needed to trust it: a p95 needs 20 / 0.05 = 400 values. With 400, the
# distribution-free 95% interval of the p95 spans order statistics 95 +- 2.2 percentile points
# (ranks n*p +- 1.96 * sqrt(n*p*(1-p))), i.e. between about the p92.8 and p97.2.
DEFAULT_MIN_TAIL = 20

# registry latency family -> the HDR log tag that holds it (histograms.hlog)
_TAGS = {
    "chat": "chat.service",
    "intended": "chat.intended",
    "ttfb": stream.TTFB,
    "ttft": stream.TTFT,
    "ttfo": stream.TTFO,
    "intended_ttft": stream.TTFT_INTENDED,
    "itl": stream.ITL,
    "tpot": stream.TPOT,
    "sentence": "sla.sentence",
    "token": "sla.token",
}
# gate -> (HDR log tag, percentile) for latency gates
LATENCY_GATES = {
    f"{family}_{p}_ms": (tag, float(p[1:])) for family, tag in _TAGS.items() for p in registry.PERCENTILES
}
SHARE_GATES = ("error_rate", "expired_failed_rate")
GOODPUT_GATES = ("goodput_rps", "goodput_share")
# Chats behind a goodput figure, per ``min_tail``: 5 x 20 = 100 chats, a count whose Poisson noise
# (1 / sqrt(n)) is 10% of it.
GOODPUT_CHATS_PER_TAIL = 5


@dataclasses.dataclass(frozen=True)
class Gate:
    name: str
    threshold: float
    kind: str = "ceiling"  # the value must stay at or below the threshold ("floor": at or above)

    def holds(self, value: float) -> bool:
        return value <= self.threshold if self.kind == "ceiling" else value >= self.threshold

    def margin(self, value: float) -> float | None:
        """Room left as a share of the threshold: positive holds, negative breaks."""
        if not self.threshold:
            return None
        room = self.threshold - value if self.kind == "ceiling" else value - self.threshold
        return room / abs(self.threshold)

    def applies(self, attach_rate: float, granularity: str) -> bool:
        """Whether a step at ``attach_rate`` can judge this gate at all: with nothing attached there
        is no explanation lane (a missing value then is not a lack of samples), and a sentence-only
        run has no token SLA."""
        for family in ("sentence", "token"):
            if self.name.startswith(family + "_") and self.name in LATENCY_GATES:
                return attach_rate > 0 and granularity in (family, "mix")
        return attach_rate > 0 if self.name == "expired_failed_rate" else True

    def min_samples(self, min_tail: int) -> int:
        """Values a verdict needs: ``min_tail`` beyond a percentile; for a share, enough requests that
        one event moves it by no more than the threshold."""
        if self.name in LATENCY_GATES:
            p = LATENCY_GATES[self.name][1]
            return math.ceil(min_tail / (1.0 - p / 100.0))
        if self.name in GOODPUT_GATES:
            return GOODPUT_CHATS_PER_TAIL * min_tail
        return math.ceil(1.0 / self.threshold) if self.threshold > 0 else 1


def parse_gates(items: Iterable[str]) -> list[Gate]:
    """``["chat_p95_ms=500", "error_rate=0.01"]`` -> gates (bad names and values fail by name)."""
    out = []
    for name, threshold in registry.parse_slos(items).items():
        if name not in LATENCY_GATES and name not in SHARE_GATES and name not in GOODPUT_GATES:
            judged = ", ".join([*SHARE_GATES, *GOODPUT_GATES, "<latency>_pNN_ms"])
            raise ConfigError("slo", f"{name}: a capacity step cannot judge it from its files ({judged})")
        kind = "ceiling" if registry.REGISTRY[name].direction == "max" else "floor"
        out.append(Gate(name, threshold, kind))
    return out
