"""The soak schedule: profile shapes, segment counts with fractional flags, rotation rules, tick()."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from hif.errors import ConfigError
from hif.harness.soak.plan import (
    ATTACH_RATE_MAX,
    ATTACH_RATE_MIN,
    PROFILES,
    Schedule,
    attach_rate,
    granularity,
)


def schedule(profile: str = "spiky", **kw: Any) -> Schedule:
    return Schedule(profile=PROFILES[profile], **{"hours": 2.0, **kw})


def test_profile_shapes_match_the_runbook() -> None:
    default, heavy = schedule("default").plan(0), schedule("heavy").plan(0)
    assert (default.concurrency, default.rps_limit) == (400, 0.0)
    assert (heavy.concurrency, heavy.rps_limit) == (1000, 0.0)
    spiky = schedule("spiky").segments()
    assert [(p.phase, p.concurrency) for p in spiky[:4]] == [("high", 800), ("low", 200)] * 2
    assert all(p.rps_limit == 0 for p in spiky if p.phase == "high")
    assert all(p.rps_limit > 0 for p in spiky if p.phase == "low")


def test_two_hours_of_ten_minute_segments_rotate_attach_rate_and_granularity() -> None:
    plans = schedule().segments()
    assert len(plans) == 12
    assert all(p.duration_s == 600 for p in plans)
    assert [p.number for p in plans if p.granularity == "token"] == [5, 10]
    assert {p.granularity for p in plans if p.number % 5} == {"mix"}
    rates = [p.attach_rate for p in plans]
    assert all(ATTACH_RATE_MIN <= r <= ATTACH_RATE_MAX for r in rates)
    assert min(rates) == ATTACH_RATE_MIN and max(rates) == ATTACH_RATE_MAX
    assert all(a != b for a, b in itertools.pairwise(rates))  # it rotates every segment


def test_token_segments_meet_every_attach_rate_over_time() -> None:
    token_rates = {attach_rate(i) for i in range(200) if granularity(i) == "token"}
    assert token_rates == {0.3, 0.35, 0.4, 0.45, 0.5}


@pytest.mark.parametrize(
    ("hours", "segment_minutes", "durations"),
    [(0.01, 0.1, [6.0] * 6), (0.01, 0.25, [15.0, 15.0, 6.0]), (0.5, 10.0, [600.0] * 3), (0.001, 10.0, [3.6])],
)
def test_fractional_hours_and_segments(hours: float, segment_minutes: float, durations: list[float]) -> None:
    plans = schedule(hours=hours, segment_minutes=segment_minutes).segments()
    assert [round(p.duration_s, 6) for p in plans] == durations
    assert sum(p.duration_s for p in plans) == pytest.approx(hours * 3600)


def test_spike_period_can_span_several_segments() -> None:
    plans = schedule(hours=1.0, segment_minutes=10.0, spike_minutes=20.0).segments()
    assert [p.phase for p in plans] == ["high", "high", "low", "low", "high", "high"]


def test_concurrency_scale_shrinks_profiles_but_keeps_them_alive() -> None:
    plans = schedule(concurrency_scale=0.01).segments()
    assert [(p.concurrency, p.rps_limit) for p in plans[:2]] == [(8, 0.0), (2, 1.0)]
    half = schedule(concurrency_scale=0.5).segments()
    assert [(p.concurrency, p.rps_limit) for p in half[:2]] == [(400, 0.0), (100, 50.0)]
    tiny = schedule("default", concurrency_scale=0.0001).plan(0)
    assert tiny.concurrency == 1


def test_tick_follows_elapsed_time_like_locust_load_shapes() -> None:
    s = schedule(hours=0.5)
    first, second, last = s.tick(0.0), s.tick(605.0), s.tick(1799.0)
    assert first is not None and second is not None and last is not None
    assert (first.number, second.number, last.number) == (1, 2, 3)
    assert second.phase == "low"
    assert s.tick(1800.0) is None and s.tick(-1.0) is None


@pytest.mark.parametrize(
    "bad", [{"hours": 0.0}, {"segment_minutes": -1.0}, {"concurrency_scale": 0.0}, {"spike_minutes": 0.0}]
)
def test_bad_values_fail_naming_the_key(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError) as info:
        schedule("spiky", **bad)
    assert next(iter(bad)) in str(info.value)
