"""The search's gates, read through one adapter over the load runner's SLO syntax.

Today the ceilings of :func:`hif.harness.load.settings.parse_slos` (``chat_p95_ms=500``...); when the
gate registry lands, :func:`parse_gates` is the one place that changes. Each gate knows the figure it
judges (a latency percentile of an HDR tag, or a share of records) and how many samples that figure
needs before a verdict means anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from hif.harness.load.settings import parse_slos

# Samples beyond a percentile needed to trust it: a p95 needs 20 / 0.05 = 400 values. With 400, the
# distribution-free 95% interval of the p95 spans order statistics 95 +- 2.2 percentile points
# (ranks n*p +- 1.96 * sqrt(n*p*(1-p))), i.e. between about the p92.8 and p97.2.
DEFAULT_MIN_TAIL = 20

# gate -> (HDR log tag, percentile) for latency gates
LATENCY_GATES = {
    "chat_p95_ms": ("chat.service", 95.0),
    "sentence_p95_ms": ("sla.sentence", 95.0),
    "token_p95_ms": ("sla.token", 95.0),
}
SHARE_GATES = ("error_rate", "expired_failed_rate")


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
        lane = {"sentence_p95_ms": ("sentence", "mix"), "token_p95_ms": ("token", "mix")}
        if self.name in lane:
            return attach_rate > 0 and granularity in lane[self.name]
        return attach_rate > 0 if self.name == "expired_failed_rate" else True

    def min_samples(self, min_tail: int) -> int:
        """Values a verdict needs: ``min_tail`` beyond a percentile; for a share, enough requests that
        one event moves it by no more than the threshold."""
        if self.name in LATENCY_GATES:
            p = LATENCY_GATES[self.name][1]
            return math.ceil(min_tail / (1.0 - p / 100.0))
        return math.ceil(1.0 / self.threshold) if self.threshold > 0 else 1


def parse_gates(items: Iterable[str]) -> list[Gate]:
    """``["chat_p95_ms=500", "error_rate=0.01"]`` -> gates (bad names and values fail by name)."""
    return [Gate(name, threshold) for name, threshold in parse_slos(items).items()]
