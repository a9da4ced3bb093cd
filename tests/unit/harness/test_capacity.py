"""The capacity search's parts: settings, gates and their sample counts, the judge, the search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hif.errors import ConfigError
from hif.harness.capacity.cli import main
from hif.harness.capacity.gates import Gate, parse_gates
from hif.harness.capacity.judge import Window, judge
from hif.harness.capacity.search import search
from hif.harness.capacity.settings import CapacitySettings
from hif.harness.client import new_event_loop
from hif.harness.records import HISTOGRAM_LOG_FILE
from hif.harness.stats import Interval, LatencyHistogram, write_intervals
from hif.harness.target import TargetScript
from tests._capacity import search_target
from tests.schemas import validate_file

T0 = 1_700_000_000.0


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ConfigError, match="slo"):
        CapacitySettings().require_gates()
    with pytest.raises(ConfigError, match="attach_rates"):
        CapacitySettings(slo=("chat_p95_ms=500",), attach_rates="0,1.5")
    with pytest.raises(ConfigError, match="rate_max"):
        CapacitySettings(slo=("chat_p95_ms=500",), rate_min=10, rate_max=5)
    with pytest.raises(ConfigError, match="slo"):
        CapacitySettings(slo=("p42=1",))


def test_cli_bad_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--attach-rates", "x", "--slo", "chat_p95_ms=500"]) == 2
    assert main(["--rate-min", "-1", "--slo", "chat_p95_ms=500"]) == 2
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("hif: ") == 3 and "attach_rates" in err


def test_sample_counts_behind_a_verdict() -> None:
    p95, err = parse_gates(["chat_p95_ms=500", "error_rate=0.01"])
    assert p95.min_samples(20) == 400  # 20 values beyond the p95
    assert err.min_samples(20) == 100  # one error moves the share by the threshold
    assert p95.margin(400.0) == pytest.approx(0.2) and p95.margin(600.0) == pytest.approx(-0.2)


def test_explanation_gates_apply_only_where_explanations_are_asked_for() -> None:
    sentence, token, expired, chat = parse_gates(
        ["sentence_p95_ms=1500", "token_p95_ms=3500", "expired_failed_rate=0.05", "chat_p95_ms=500"]
    )
    assert not sentence.applies(0.0, "sentence") and sentence.applies(0.1, "mix")
    assert not token.applies(0.3, "sentence") and token.applies(0.3, "token")
    assert not expired.applies(0.0, "mix") and expired.applies(0.1, "sentence")
    assert chat.applies(0.0, "sentence")


def _folder(d: Path, per_second: list[list[float]]) -> Window:
    d.mkdir(parents=True)
    intervals = []
    for i, values in enumerate(per_second):
        h = LatencyHistogram()
        for v in values:
            h.record(v)
        intervals.append(Interval("chat.service", T0 + i, T0 + i + 1, h))
        intervals.append(Interval("chat.intended", T0 + i, T0 + i + 1, h))
    with open(d / HISTOGRAM_LOG_FILE, "w") as fh:
        write_intervals(fh, intervals)
    return Window(d, T0 + 1, T0 + len(per_second))


def test_judge_discards_warm_up_and_needs_samples(tmp_path: Path) -> None:
    gates = [Gate("chat_p95_ms", 100.0)]
    # a slow first second (warm-up), then steady 50 ms
    w = _folder(tmp_path / "a", [[900.0] * 50] + [[50.0] * 50] * 4)
    assert judge(gates, [w], min_tail=20)["verdict"] == "inconclusive"  # 200 values < 400
    verdict = judge(gates, [w], min_tail=5)
    assert verdict["verdict"] == "pass" and verdict["gates"][0]["value"] == pytest.approx(50.0, rel=0.01)


def test_judge_flags_a_climbing_queue_as_saturation(tmp_path: Path) -> None:
    climbing = [[10.0] * 60] + [[20.0 + 40 * i] * 60 for i in range(6)]
    verdict = judge([Gate("chat_p95_ms", 150.0)], [_folder(tmp_path / "a", climbing)], min_tail=1)
    assert verdict["verdict"] == "fail" and verdict["saturated"]
    steady = [[10.0] * 60] + [[50.0] * 60] * 6
    assert not judge([Gate("chat_p95_ms", 150.0)], [_folder(tmp_path / "b", steady)], min_tail=1)["saturated"]


def test_judge_reads_goodput_floors_from_the_records(tmp_path: Path) -> None:
    import json

    from hif.harness.records import CHAT_FILE, EXPLANATION_FILE

    w = _folder(tmp_path / "g", [[50.0]] * 11)  # judged: T0 + 1 .. T0 + 11, 10 s
    chats, traces = [], []
    for i in range(200):  # 20 per second; every 4th attached, every 10th failed
        attached, failed, ts = i % 4 == 0, i % 10 == 5, T0 + 1 + i / 20
        chats.append({"intended_ts": ts, "ts": ts, "status": 500 if failed else 200,
                      "error_class": "http_5xx" if failed else None, "latency_ms": 50.0,
                      "attached": attached, "trace_id": f"t{i}" if attached else None})  # fmt: skip
        if attached:  # half the explanations too slow for the 1500 ms sentence target
            sla = 900.0 if i % 8 == 0 else 2000.0
            traces.append({"ts": T0 + 2, "trace_id": f"t{i}", "state": "complete", "granularity": "sentence",
                           "sla_ms": sla})  # fmt: skip
    chats.append({**chats[0], "intended_ts": T0 + 0.5})  # warm-up: not judged
    (w.folder / CHAT_FILE).write_text("".join(json.dumps(c) + "\n" for c in chats))
    (w.folder / EXPLANATION_FILE).write_text("".join(json.dumps(t) + "\n" for t in traces))
    # 200 chats: 20 failed, 50 attached of which 25 too slow -> 155 good, 15.5 per second
    holds = parse_gates(["goodput_rps>=15", "goodput_share>=0.75"])
    out = judge(holds, [w], min_tail=20)
    assert out["verdict"] == "pass", out
    rps, share = out["gates"]
    assert rps["value"] == pytest.approx(15.5) and share["value"] == pytest.approx(0.775)
    assert rps["samples"] == 200 and rps["min_samples"] == 100 and rps["kind"] == "floor"
    breaks = judge(parse_gates(["goodput_rps>=16", "goodput_share>=0.75"]), [w], min_tail=20)
    assert breaks["verdict"] == "fail" and breaks["first_broken"] == "goodput_rps"
    assert breaks["gates"][0]["margin"] == pytest.approx(-0.5 / 16)
    assert judge(holds, [w], min_tail=20 * 3)["verdict"] == "inconclusive"  # 200 < 300 chats


def test_search_bounds() -> None:
    never = search(lambda r: "fail", rate_min=10, rate_max=100, growth=2, resolution=0.1, max_steps=5)
    assert never.rate_rps is None and never.steps == 1
    always = search(lambda r: "pass", rate_min=10, rate_max=100, growth=2, resolution=0.1, max_steps=9)
    assert always.rate_rps == 100 and always.reached_max
    short = search(
        lambda r: "invalid" if r > 30 else "pass",
        rate_min=10,
        rate_max=100,
        growth=2,
        resolution=0.1,
        max_steps=9,
    )
    assert short.generator_short and short.rate_rps == 20
    # an inconclusive step is never credited
    unsure = search(
        lambda r: "pass" if r < 30 else "inconclusive",
        rate_min=10,
        rate_max=100,
        growth=2,
        resolution=0.1,
        max_steps=9,
    )
    assert unsure.rate_rps is not None and unsure.rate_rps < 30


# What both searches against the scripted target share: one attach rate, and short steps whose
# gates need only one value beyond their percentile, so 1.5 s of load is enough to judge a step.
SHORT_STEPS: dict[str, Any] = {
    "attach_rates": "0", "warmup_seconds": 0.2, "step_seconds": 1.5, "drain_seconds": 0.0,
    "min_tail_samples": 1,
}  # fmt: skip


def test_lowest_step_failing_exits_1(tmp_path: Path) -> None:
    data = search_target(
        TargetScript(delay_ms=40.0), tmp_path, timeout_s=60, slo=("chat_p95_ms=10",), rate_min=50.0,
        rate_max=100.0, **SHORT_STEPS,
    )  # fmt: skip
    assert data["exit_code"] == 1 and data["status"] == "lowest_step_failed"
    assert data["frontier"][0]["rate_rps"] is None
    assert data["steps"][0]["first_broken"] == "chat_p95_ms"
    validate_file(tmp_path / "capacity.json")
    assert "none (lowest step broke a gate)" in (tmp_path / "capacity.md").read_text()
    assert "<svg" in (tmp_path / "capacity.svg").read_text()


@pytest.mark.parametrize(("floor", "code"), [("goodput_rps>=20", 0), ("goodput_rps>=1000", 1)])
def test_a_goodput_floor_decides_the_search(tmp_path: Path, floor: str, code: int) -> None:
    data = search_target(
        TargetScript(delay_ms=2.0), tmp_path, timeout_s=60, slo=(floor, "chat_p95_ms=500"), rate_min=50.0,
        rate_max=50.0, arrival="constant", **SHORT_STEPS,
    )  # fmt: skip
    step = data["steps"][0]
    gate = next(g for g in step["gates"] if g["name"] == "goodput_rps")
    assert gate["kind"] == "floor" and gate["value"] == pytest.approx(50.0, rel=0.15)
    assert data["exit_code"] == code
    assert step["first_broken"] == (None if code == 0 else "goodput_rps")
    assert (data["frontier"][0]["rate_rps"] == 50.0) is (code == 0)


def test_bracketing_climbs_past_inconclusive_steps() -> None:
    """Low rates feed the explanation lane too slowly for a p95: the climb goes on, uncredited."""
    trace: list[float] = []

    def probe(rate: float) -> str:
        trace.append(rate)
        return "inconclusive" if rate < 30 else ("pass" if rate <= 60 else "fail")

    result = search(probe, rate_min=10, rate_max=200, growth=2, resolution=0.1, max_steps=10)
    assert trace[:4] == [10, 20, 40, 80]
    assert result.rate_rps is not None and 55 <= result.rate_rps <= 60
    nothing = search(
        lambda r: "inconclusive", rate_min=10, rate_max=40, growth=2, resolution=0.1, max_steps=9
    )
    assert nothing.rate_rps is None and nothing.steps == 3


def test_failed_preflight_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--base-url", "http://127.0.0.1:1", "--slo", "chat_p95_ms=500", "--results-dir", str(tmp_path)]
    off = ["--metrics-url-gateway", "off", "--metrics-url-explainer", "off", "--idle-timeout-seconds", "0.1"]
    assert main(args + off) == 2
    assert capsys.readouterr().err.startswith("hif: ")


def test_a_step_is_invalid_exactly_when_the_runners_self_check_says_so(tmp_path: Path) -> None:
    """The step's validity is the load runner's verdict (which forgives a Poisson shortfall within
    its noise: hif.harness.load.summary.short_of_rate), not a second check of its own."""
    from hif.harness.capacity.run import _Search
    from hif.harness.load.settings import LoadSettings
    from hif.harness.load.summary import LoadSummary

    reasons: list[list[str]] = [["event-loop lag p99 300 ms > 100 ms"], [], []]

    async def fake_run(load: LoadSettings, **_: object) -> LoadSummary:
        load.results_dir.mkdir(parents=True)
        with open(load.results_dir / HISTOGRAM_LOG_FILE, "w") as fh:
            write_intervals(fh, [])
        gen = {"valid": not reasons[0], "reasons": reasons.pop(0), "achieved_rps": 4.0}
        return LoadSummary({"started_at": T0, "load_ended_at": T0 + 5, "stopped_by": "duration",
                            "generator": gen})  # fmt: skip

    settings = CapacitySettings(
        slo=("chat_p95_ms=500",), results_dir=tmp_path, idle_timeout_seconds=0.1,
        metrics_url_gateway="off", metrics_url_explainer="off",
    )  # fmt: skip
    search = _Search(settings, fake_run)
    loop = new_event_loop()
    try:
        first = loop.run_until_complete(search.step(4.0, 0.0))
        second = loop.run_until_complete(search.step(4.0, 0.0))
    finally:
        loop.close()
    assert first["verdict"] == "invalid" and not first["generator_valid"]
    assert second["verdict"] != "invalid" and second["generator_valid"]


def test_first_to_break_counts_final_verdicts_only() -> None:
    from hif.harness.capacity.run import lowest_failing

    steps = [
        {
            "index": 0,
            "rate_rps": 16.0,
            "verdict": "fail",
            "first_broken": "sentence_p95_ms",
            "repeat_of": None,
        },
        {"index": 1, "rate_rps": 16.0, "verdict": "pass", "first_broken": None, "repeat_of": 0},
        {
            "index": 2,
            "rate_rps": 36.0,
            "verdict": "fail",
            "first_broken": "expired_failed_rate",
            "repeat_of": None,
        },
    ]
    assert lowest_failing(steps) == steps[2]


def test_the_readme_command_parses() -> None:
    import dataclasses
    import re
    import shlex

    from hif.config import build
    from hif.harness.capacity.cli import build_parser

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    line = re.search(r"`(python -m tests\.load\.capacity [^`]+)`", readme)
    assert line is not None
    args = build_parser().parse_args(shlex.split(line.group(1))[3:])
    settings = dataclasses.replace(build(CapacitySettings, cli=args, env={}), slo=tuple(args.slo))
    settings.require_gates()
    assert settings.attach_list == [0.0, 0.1, 0.3] and len(settings.gates) == 2


def test_the_search_plan_crosses_attach_rates_with_prompt_lengths(tmp_path: Path) -> None:
    s = CapacitySettings(slo=("chat_p95_ms=500",), attach_rates="0,0.3", prompt_tokens="128,512,2048")
    assert s.plan() == [(0.0, 128), (0.0, 512), (0.0, 2048), (0.3, 128), (0.3, 512), (0.3, 2048)]
    assert CapacitySettings(slo=("chat_p95_ms=500",), attach_rates="0,0.3").plan() == [
        (0.0, None),
        (0.3, None),
    ]
    step = s.step_settings(10.0, 0.3, tmp_path, 512)
    assert step.dataset == "synthetic:prompt_tokens=512,output_tokens=16" and step.dataset_size == 200
    assert s.step_settings(10.0, 0.3, tmp_path).dataset == ""  # no axis: the runner's default prompts
    assert s.public()["prompt_tokens"] == [128, 512, 2048]
    with pytest.raises(ConfigError, match="prompt_tokens"):
        CapacitySettings(slo=("chat_p95_ms=500",), prompt_tokens="128,lots")
    with pytest.raises(ConfigError, match="prompt_tokens"):
        CapacitySettings(slo=("chat_p95_ms=500",), prompt_tokens="0")
    with pytest.raises(ConfigError, match="prompt_tokens"):
        CapacitySettings(slo=("chat_p95_ms=500",), prompt_tokens="128", dataset="chat_small")
    assert main(["--slo", "chat_p95_ms=500", "--prompt-tokens", "12x"]) == 2


NO_REPEAT = {"repeat_of": None}


def test_a_break_above_inconclusive_steps_is_not_called_the_lowest_step(tmp_path: Path) -> None:
    """Steps too thin to judge, then one that breaks a gate: no rate passed, but the lowest step did
    not break anything, so the search says where it broke instead of blaming the lowest step."""
    from hif.harness.capacity import markdown
    from hif.harness.capacity import run as capacity_run
    from hif.harness.capacity.search import Result

    def step(index: int, rate: float, verdict: str, broken: str | None) -> dict[str, object]:
        return {"index": index, "rate_rps": rate, "verdict": verdict, "first_broken": broken, **NO_REPEAT}

    settings = CapacitySettings(slo=("sentence_p95_ms=1500",), results_dir=tmp_path)
    result = Result(rate_rps=None, interval_rps=None, steps=3, reached_max=False, generator_short=False)
    thin_then_broke = [step(0, 8.0, "inconclusive", None), step(1, 16.0, "inconclusive", None)]
    thin_then_broke.append(step(2, 64.0, "fail", "sentence_p95_ms"))
    broke_first = [step(0, 8.0, "fail", "sentence_p95_ms")]
    for steps, status, words in [
        (thin_then_broke, "no_rate_passed", "broke at 64 req/s; every lower step had too few samples"),
        (broke_first, "lowest_step_failed", "lowest step broke a gate"),
    ]:
        row = capacity_run._frontier(0.1, None, result, steps)  # type: ignore[arg-type]
        assert row["broke_at_rps"] == steps[-1]["rate_rps"] and row["lowest_rps"] == 8.0
        doc = capacity_run._document(settings, 0.0, steps, [row])  # type: ignore[arg-type]
        assert doc["status"] == status and doc["exit_code"] == 1
        assert words in markdown.none_passed(row)
