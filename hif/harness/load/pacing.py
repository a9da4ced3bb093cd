"""When requests are meant to start: the shared token bucket, open-loop arrival schedules, shards.

Every request carries an *intended* start: the slot the schedule gave it. A slot is never moved
later because the generator or the server was busy, which is what keeps the intended-start
latency free of coordinated omission (as wrk2 does): a request whose slot passed while every
worker waited on a stalled server still counts from its slot.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from hif.errors import ConfigError


class TokenBucket:
    """Slots at ``rate_per_s``, shared by every worker of the process (closed loop + ``--rps-limit``).

    ``reserve(now)`` hands out the next slot. Slots missed while all workers were blocked stay
    owed (so their latency counts from the slot) but never more than ``max_backlog_s`` worth:
    past that, the bucket forgets, like a client that gave up.
    """

    def __init__(self, rate_per_s: float, *, max_backlog_s: float) -> None:
        if rate_per_s <= 0:
            raise ConfigError("rps_limit", f"must be > 0 for a token bucket, got {rate_per_s!r}")
        self.interval_s = 1.0 / rate_per_s
        self.max_backlog_s = max_backlog_s
        self._next: float | None = None

    def reserve(self, now: float) -> float:
        slot = now if self._next is None else max(self._next, now - self.max_backlog_s)
        self._next = slot + self.interval_s
        return slot


def arrivals(rate_per_s: float, start: float, kind: str, seed: int) -> Iterator[float]:
    """Open-loop arrival times from ``start``: evenly spaced or Poisson (exponential gaps)."""
    if rate_per_s <= 0:
        raise ConfigError("arrival_rate", f"must be > 0, got {rate_per_s!r}")
    rng = random.Random(seed)
    t = start
    i = 0
    while True:
        if kind == "poisson":
            t += rng.expovariate(rate_per_s)
            yield t
        else:
            yield start + i / rate_per_s  # multiply, not add: no float drift over hours
            i += 1


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``; shards are numbered from 1."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError as exc:
        raise ConfigError("shard", f"must look like i/N (e.g. 1/2), got {text!r}") from exc
    if n < 1 or not 1 <= i <= n:
        raise ConfigError("shard", f"needs 1 <= i <= N, got {text!r}")
    return i, n


def share(total: int, i: int, n: int) -> int:
    """Part ``i`` (1-based) of ``total`` split into ``n`` near-equal integer parts."""
    return total // n + (1 if i - 1 < total % n else 0)
