"""The SLO gate registry: names, directions, comma lists, and verdicts read from a summary."""

from __future__ import annotations

import pytest

from hif.errors import ConfigError
from hif.harness import gates
from hif.harness.load.settings import SLO_NAMES, parse_slos

SUMMARY = {
    "chat": {
        "requests": 10,
        "rps": 120.0,
        "error_rate": 0.02,
        "success_rate": 0.98,
        "latency_ms": {"count": 10, "p95_ms": 480.0, "p99_ms": 900.0},
        "stream": {
            "ttft_ms": {"count": 10, "p95_ms": 850.0},
            "itl_ms": {"count": 0, "p99_ms": 0.0},
            "output_tokens": 500,
            "output_tokens_per_s": 40.0,
        },
    },
    "explanations": {"traces": 0, "expired_failed_rate": 0.0, "sla_ms": {"sentence": {"count": 0}}},
}


def test_every_runbook_gate_is_registered_as_a_ceiling() -> None:
    for name in SLO_NAMES:
        assert gates.REGISTRY[name].direction == "max"


def test_comma_lists_repeats_and_directions_parse() -> None:
    got = parse_slos(
        ["chat_p95_ms=500", "ttft_p95_ms=800, itl_p99_ms<=60", "rps>=100,output_tokens_per_s=50"]
    )
    assert got == {
        "chat_p95_ms": 500.0,
        "ttft_p95_ms": 800.0,
        "itl_p99_ms": 60.0,
        "rps": 100.0,
        "output_tokens_per_s": 50.0,
    }


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("ttft_p95_ms>=800", "ceiling"),
        ("rps<=100", "floor"),
        ("nope_ms=1", "unknown gate"),
        ("chat_p95_ms=fast", "not a number"),
        ("chat_p95_ms", "expected NAME=VALUE"),
    ],
)
def test_bad_gates_fail_by_name(item: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_slos([item])


def test_evaluate_reads_each_direction_and_leaves_no_data_unjudged() -> None:
    slos = parse_slos(["chat_p95_ms=500,ttft_p95_ms=800,itl_p99_ms=60,rps>=100,error_rate=0.01"])
    result = gates.evaluate(slos, SUMMARY)
    verdicts = {g["name"]: (g["value"], g["pass"], g["op"]) for g in result["gates"]}
    assert verdicts == {
        "chat_p95_ms": (480.0, True, "<="),
        "ttft_p95_ms": (850.0, False, "<="),
        "itl_p99_ms": (None, None, "<="),  # no ITL counted (no tokenizer): neither pass nor fail
        "rps": (120.0, True, ">="),
        "error_rate": (0.02, False, "<="),
    }
    assert result["pass"] is False


def test_floors_break_below_and_ceilings_above() -> None:
    assert gates.breaches({"rps": 90.0, "chat_p95_ms": 400.0}, {"rps": 100.0, "chat_p95_ms": 500.0}) == [
        "rps"
    ]
    assert gates.breaches({"rps": None}, {"rps": 100.0}) == []
