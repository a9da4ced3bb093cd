"""Least squares, the drift/leak verdicts and the overall finding."""

from __future__ import annotations

import math

import pytest

from hif.harness.soak.drift import (
    DRIFT,
    INSUFFICIENT,
    LEAK,
    STABLE,
    analyse,
    analyse_series,
    least_squares,
)

MIB = 2**20
HOURS = [i / 6 for i in range(1, 13)]  # twelve 10-minute segments


def test_least_squares_recovers_a_line_and_r2() -> None:
    fit = least_squares([0, 1, 2, 3], [1.0, 3.0, 5.0, 7.0])
    assert (fit.slope, fit.intercept, fit.r2, fit.n) == (2.0, 1.0, 1.0, 4)
    noisy = least_squares([0, 1, 2, 3], [1.0, 4.0, 4.0, 7.0])
    assert noisy.slope == pytest.approx(1.8) and 0.8 < noisy.r2 < 1.0
    flat = least_squares([0, 1, 2], [5.0, 5.0, 5.0])
    assert (flat.slope, flat.r2) == (0.0, 1.0)


@pytest.mark.parametrize(("xs", "ys"), [([1.0], [1.0]), ([1.0, 1.0], [1.0, 2.0]), ([1.0, 2.0], [1.0])])
def test_least_squares_rejects_degenerate_input(xs: list[float], ys: list[float]) -> None:
    with pytest.raises(ValueError):
        least_squares(xs, ys)


def test_steady_memory_growth_is_a_leak_and_flat_memory_is_stable() -> None:
    growing = [500 * MIB + 100 * MIB * t for t in HOURS]  # +100 MiB/h on 500 MiB: 20%/h
    res = analyse_series("explainer_rss_bytes", HOURS, growing)
    assert res["verdict"] == LEAK
    assert res["slope_per_hour"] == pytest.approx(100 * MIB)
    flat = [500 * MIB + (MIB if i % 2 else -MIB) for i in range(12)]
    assert analyse_series("gateway_rss_bytes", HOURS, flat)["verdict"] == STABLE


def test_small_or_noisy_slopes_are_not_findings() -> None:
    slow = [500 * MIB + 4 * MIB * t for t in HOURS]  # under the 8 MiB/h floor
    assert analyse_series("gateway_rss_bytes", HOURS, slow)["verdict"] == STABLE
    zigzag = [100.0 + (300.0 if i % 2 else 0.0) + 5 * i for i in range(12)]  # rises, but r2 is low
    res = analyse_series("chat_p95_ms", HOURS, zigzag)
    assert res["r2"] < 0.5 and res["verdict"] == STABLE


def test_p95_and_error_rate_drift() -> None:
    p95 = [120.0 + 60.0 * t for t in HOURS]  # +60 ms/h on ~180 ms
    assert analyse_series("chat_p95_ms", HOURS, p95)["verdict"] == DRIFT
    errors = [0.001 + 0.02 * t for t in HOURS]  # +2 points/h
    assert analyse_series("chat_error_rate", HOURS, errors)["verdict"] == DRIFT
    improving = [0.05 - 0.02 * t for t in HOURS]
    assert analyse_series("chat_error_rate", HOURS, improving)["verdict"] == STABLE


def test_warmup_segment_is_left_out_of_the_fit() -> None:
    values = [900 * MIB] + [500 * MIB] * 11  # a huge first segment, then flat
    res = analyse_series("gateway_rss_bytes", HOURS, values)
    assert res["n"] == 11 and res["slope_per_hour"] == pytest.approx(0.0)


def test_missing_points_are_skipped_and_too_few_is_insufficient() -> None:
    values: list[float | None] = [None, math.nan, 1.0, None, 2.0]
    assert analyse_series("chat_p95_ms", HOURS[:5], values)["verdict"] == INSUFFICIENT
    assert analyse_series("chat_p95_ms", [], [])["n"] == 0


def test_a_short_span_is_insufficient_however_steep() -> None:
    minutes = [i / 60 for i in range(1, 7)]  # six points over five minutes
    steep = [500 * MIB + 1000 * MIB * t for t in minutes]
    res = analyse_series("gateway_rss_bytes", minutes, steep)
    assert res["verdict"] == INSUFFICIENT and res["slope_per_hour"] == pytest.approx(1000 * MIB)
    assert analyse_series("gateway_rss_bytes", minutes, steep, min_span_h=0.05)["verdict"] == LEAK


def test_overall_verdict_ranks_leak_over_drift_and_lists_findings() -> None:
    series: dict[str, list[float | None]] = {
        "chat_p95_ms": [120.0 + 60.0 * t for t in HOURS],
        "gateway_rss_bytes": [500 * MIB] * 12,
        "explainer_rss_bytes": [500 * MIB + 100 * MIB * t for t in HOURS],
    }
    result = analyse(HOURS, series)
    assert result["overall"] == LEAK
    assert [f.split(":")[0] for f in result["findings"]] == ["chat_p95_ms", "explainer_rss_bytes"]
    assert analyse(HOURS, {"gateway_rss_bytes": [500 * MIB] * 12})["overall"] == STABLE
    assert analyse(HOURS[:2], {"gateway_rss_bytes": [1.0, 2.0]})["overall"] == INSUFFICIENT
