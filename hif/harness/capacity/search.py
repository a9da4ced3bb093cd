"""Bracketing, then bisection, for the highest rate at which a probe passes: pure, so testable.

The probe runs (and judges) one step at a rate and returns its verdict: ``pass``, ``fail``,
``inconclusive`` (never credited: while bracketing the climb goes on, since nothing broke and a
higher rate brings more samples; while bisecting it counts as not a pass) or ``invalid``
(the generator, not the server, was the limit: the search stops, since no higher rate can be
measured either).

>>> trace = []
>>> def probe(rate):
...     trace.append(rate)
...     return "pass" if rate <= 70 else "fail"
>>> result = search(probe, rate_min=10, rate_max=200, growth=2, resolution=0.1, max_steps=10)
>>> result.rate_rps, result.interval_rps, trace
(70.0, (70.0, 75.0), [10, 20, 40, 80, 60.0, 70.0, 75.0])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

Probe = Callable[[float], str]


@dataclasses.dataclass(frozen=True)
class Result:
    rate_rps: float | None  # highest passing rate; None when the first step did not pass
    interval_rps: tuple[float, float] | None  # (highest pass, lowest non-pass or rate_max)
    steps: int
    reached_max: bool  # rate_max passed: the frontier is beyond what was asked
    generator_short: bool  # a step was invalid: the generator could not offer the rate


def search(
    probe: Probe, *, rate_min: float, rate_max: float, growth: float, resolution: float, max_steps: int
) -> Result:
    lo: float | None = None
    hi: float | None = None
    steps = 0
    rate = rate_min
    while steps < max_steps:  # bracketing: grow until a step does not pass
        verdict = probe(rate)
        steps += 1
        if verdict == "invalid":
            return _result(lo, hi or rate, steps, rate_max, short=True)
        if verdict == "fail":
            hi = rate
            break
        if verdict == "pass":
            lo = rate
        # inconclusive (too few samples: low rates feed the explanation lane slowly): not credited,
        # but no gate broke either, so climb on; a higher rate brings more samples per second
        if rate >= rate_max:
            return _result(lo, rate_max, steps, rate_max)
        rate = min(rate * growth, rate_max)
    while lo is not None and hi is not None and hi / lo - 1.0 > resolution and steps < max_steps:
        mid = (lo + hi) / 2.0
        verdict = probe(mid)
        steps += 1
        if verdict == "invalid":
            return _result(lo, mid, steps, rate_max, short=True)
        if verdict == "pass":
            lo = mid
        else:
            hi = mid
    return _result(lo, hi if hi is not None else rate_max, steps, rate_max)


def _result(lo: float | None, hi: float, steps: int, rate_max: float, *, short: bool = False) -> Result:
    return Result(
        rate_rps=lo,
        interval_rps=(lo, hi) if lo is not None else None,
        steps=steps,
        reached_max=lo is not None and lo >= rate_max,
        generator_short=short,
    )
