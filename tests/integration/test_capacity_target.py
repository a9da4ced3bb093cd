"""``hif capacity`` against servers with a known answer: a fixed number of slots, first come first
served, with exponential service times (Erlang C gives the highest rate with p95 under a threshold)
and with fixed ones (the knee at slots / service time). The search's frontier lands within 10%."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from hif.harness.target import TargetScript
from tests._capacity import search_target
from tests.schemas import validate_file


def erlang_c(c: int, lam: float, mu: float) -> float:
    """Probability that an arrival waits (M/M/c)."""
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1.0 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def response_exceeds(t: float, c: int, lam: float, mu: float) -> float:
    """P(wait + service > t) in M/M/c FCFS: the wait is 0 or Exp(c mu - lam), the service Exp(mu)."""
    pw, theta = erlang_c(c, lam, mu), c * mu - lam
    tail_sum = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
    return (1.0 - pw) * math.exp(-mu * t) + pw * tail_sum


def erlang_frontier(c: int, mean_s: float, p95_s: float) -> float:
    """The highest arrival rate whose response-time p95 stays at or under ``p95_s``."""
    mu = 1.0 / mean_s
    lo, hi = 1e-6, c * mu * (1 - 1e-9)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if response_exceeds(p95_s, c, mid, mu) <= 0.05 else (lo, mid)
    return lo


def search(script: TargetScript, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return search_target(
        script, tmp_path, timeout_s=180, attach_rates="0", concurrency=128, min_tail_samples=10,
        resolution=0.05, max_steps=9,
        # Just above the Erlang frontier (utilisation 0.85-0.95) an M/M/4 queue takes
        # 1-8 s to approach its steady state: a shorter step measures a queue still
        # filling up and passes a rate that cannot hold.
        warmup_seconds=2.0, step_seconds=6.0, drain_seconds=0.0, **kw,
    )  # fmt: skip


def test_erlang_c_known_answer(tmp_path: Path) -> None:
    expected = erlang_frontier(4, 0.020, 0.100)
    data = search(
        TargetScript(slots=4, delay_ms=20.0, service="exponential", seed=3),
        tmp_path,
        slo=("chat_p95_ms=100",),
        arrival="poisson",
        rate_min=100.0,
        rate_max=400.0,
        growth=1.6,
    )
    f = data["frontier"][0]
    assert f["rate_rps"] == pytest.approx(expected, rel=0.10), (expected, data["steps"])
    assert data["exit_code"] == 0
    validate_file(tmp_path / "capacity.json")


def test_fixed_service_knee(tmp_path: Path) -> None:
    knee = 4 / 0.020  # slots / service time
    data = search(
        TargetScript(slots=4, delay_ms=20.0, service="fixed"),
        tmp_path,
        slo=("chat_p95_ms=30",),
        arrival="constant",
        rate_min=100.0,
        rate_max=400.0,
        growth=1.6,
    )
    f = data["frontier"][0]
    assert f["rate_rps"] == pytest.approx(knee, rel=0.10), data["steps"]
    assert f["first_broken"] is not None and f["first_broken"].startswith("chat_p95_ms")
