"""Saturation named on both sides of its threshold, goodput by its one definition, per-lane chaos.

The records come from a fake explainer of known capacity: chats arrive at a known rate, every one
asks for an explanation, and the explainer completes at most ``capacity`` of them per second (the
rest expire), so offered and completed rates are known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hif.harness.goodput import GoodputTargets, chat_good, explanation_good
from hif.harness.records import CHAOS_EVENTS_FILE, CHAT_FILE, EXPLANATION_FILE, SUMMARY_FILE
from hif.harness.report import run as report
from hif.harness.report.markdown import render_markdown
from hif.harness.report.saturation import SATURATION_RATIO, SATURATION_SUSTAIN_S

T0 = 1_764_201_600.0


def _write(d: Path, chats: list[dict[str, Any]], traces: list[dict[str, Any]]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / CHAT_FILE).write_text("".join(json.dumps(c) + "\n" for c in chats))
    (d / EXPLANATION_FILE).write_text("".join(json.dumps(t) + "\n" for t in traces))
    return d


def fake_explainer(
    d: Path, *, seconds: int, offered: float, capacity: float, capacity_after: tuple[int, float] | None = None
) -> Path:
    """``offered`` attached chats per second; the explainer completes ``capacity`` per second
    (from second ``capacity_after[0]`` on, ``capacity_after[1]``), the rest expire."""
    chats, traces, n = [], [], 0
    for sec in range(seconds):
        cap = capacity_after[1] if capacity_after and sec >= capacity_after[0] else capacity
        k = round(offered * (sec + 1)) - round(offered * sec)
        done = round(cap * (sec + 1)) - round(cap * sec)
        for j in range(k):
            ts, tid = T0 + sec + j / max(k, 1), f"tr-{n}"
            n += 1
            chats.append(_chat(ts, tid, 50.0, "queued"))
            state = "complete" if j < done else "expired"
            traces.append({"ts": ts, "trace_id": tid, "state": state, "granularity": "sentence",
                           "sla_ms": 400.0 if state == "complete" else None})  # fmt: skip
    return _write(d, chats, traces)


def _chat(ts: float, tid: str | None, latency_ms: float, state: str | None) -> dict[str, Any]:
    return {"ts": ts, "status": 200, "latency_ms": latency_ms, "intended_latency_ms": latency_ms,
            "attached": tid is not None, "trace_id": tid, "explanation_state": state}  # fmt: skip


def _report(d: Path) -> dict[str, Any]:
    return report.build_report([d], fetch=lambda _u: "")


@pytest.mark.parametrize(
    ("offered", "capacity", "saturated"),
    [
        (10.0, 10.0, False),  # at capacity
        (10.0 * SATURATION_RATIO * 0.95, 10.0, False),  # just under the threshold
        (10.0 * SATURATION_RATIO * 1.1, 10.0, True),  # just over it
        (40.0, 8.0, True),  # the runbook's case, far beyond capacity
    ],
)
def test_saturation_both_sides_of_the_threshold(
    tmp_path: Path, offered: float, capacity: float, saturated: bool
) -> None:
    sat = _report(fake_explainer(tmp_path, seconds=90, offered=offered, capacity=capacity))["saturation"]
    assert sat["saturated"] is saturated
    if saturated:
        assert sat["ratio"] == pytest.approx(offered / capacity, rel=0.05)
        assert sat["offered_rps"] == pytest.approx(offered, rel=0.05)
        assert sat["completed_rps"] == pytest.approx(capacity, rel=0.05)
        assert sat["longest_s"] >= SATURATION_SUSTAIN_S
    else:
        assert sat["saturated_s"] == 0


def test_saturation_must_be_sustained(tmp_path: Path) -> None:
    short = int(SATURATION_SUSTAIN_S) - 10  # over the ratio, but not for long enough
    d = fake_explainer(tmp_path / "short", seconds=90, offered=20, capacity=10, capacity_after=(short, 20))
    assert _report(d)["saturation"]["saturated"] is False
    long = int(SATURATION_SUSTAIN_S) + 10
    d = fake_explainer(tmp_path / "long", seconds=90, offered=20, capacity=10, capacity_after=(long, 20))
    sat = _report(d)["saturation"]
    assert sat["saturated"] is True
    assert sat["saturated_s"] == pytest.approx(long, abs=sat["threshold"]["sustain_s"])


def test_saturated_report_says_so_first_and_masks_explanation_deltas(tmp_path: Path) -> None:
    d = fake_explainer(tmp_path, seconds=120, offered=40, capacity=8)
    events = [
        {"ts": T0 + 60, "action": "enable", "flag": "slow-sae", "params": {"percent": 50}},
        {"ts": T0 + 80, "action": "disable", "flag": "slow-sae", "params": {}},
    ]
    (d / CHAOS_EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
    data = _report(d)
    assert data["saturation"]["saturated"] is True
    (w,) = data["chaos"]["windows"]
    assert w["explanations_masked"] is True
    md = render_markdown(data, {})
    head = md.split("## ")[0]  # everything before the first section
    assert "Explanation sidecar saturated" in head
    assert "masked" in head
    light = _report(fake_explainer(tmp_path / "light", seconds=120, offered=5, capacity=10))
    assert "not saturated" in render_markdown(light, {}).split("## ")[0]


def test_goodput_definition() -> None:
    t = GoodputTargets()
    assert chat_good(status=200, error_class=None, latency_ms=500.0, targets=t)
    assert not chat_good(status=200, error_class=None, latency_ms=500.1, targets=t)
    assert not chat_good(status=500, error_class="http_5xx", latency_ms=10.0, targets=t)
    assert not chat_good(status=200, error_class=None, latency_ms=None, targets=t)
    assert explanation_good(state="complete", granularity="sentence", sla_ms=1500.0, targets=t)
    assert not explanation_good(state="complete", granularity="sentence", sla_ms=1501.0, targets=t)
    assert explanation_good(state="complete", granularity="token", sla_ms=3000.0, targets=t)
    assert not explanation_good(state="shed", granularity="token", sla_ms=0.0, targets=t)
    gated = GoodputTargets.from_gates([{"name": "chat_p95_ms", "threshold": 700}, {"name": "error_rate"}])
    assert (gated.chat_ms, gated.sentence_ms, gated.source) == (700.0, 1500.0, "gates")


def _goodput_records(d: Path) -> Path:
    """100 chats over 10 s: 50 plain fast, 10 plain slow (600 ms), 40 attached: 20 complete in
    1 s, 10 complete in 2 s (over the sentence target), 10 shed. Goodput: 50 + 20 = 70."""
    chats, traces = [], []
    for i in range(100):
        attached = i >= 60
        tid = f"t{i}" if attached else None
        lat = 600.0 if 50 <= i < 60 else 100.0
        chats.append(_chat(T0 + i / 10, tid, lat, "queued" if attached else None))
        if attached:
            state, sla = ("complete", 1000.0) if i < 80 else ("complete", 2000.0) if i < 90 else ("shed", 0.0)
            traces.append({"ts": T0 + i / 10, "trace_id": tid, "state": state, "granularity": "sentence",
                           "sla_ms": sla})  # fmt: skip
    return _write(d, chats, traces)


def test_goodput_whole_run_and_gated_targets(tmp_path: Path) -> None:
    d = _goodput_records(tmp_path)
    g = _report(d)["goodput"]
    assert (g["goodput"], g["chats"], g["goodput_share"]) == (70, 100, 0.7)
    assert g["goodput_rps"] == pytest.approx(70 / 9.9)
    assert g["targets"]["source"] == "reference"
    gates = [{"name": "chat_p95_ms", "threshold": 700.0}, {"name": "sentence_p95_ms", "threshold": 2500.0}]
    (d / SUMMARY_FILE).write_text(json.dumps({"slo": {"gates": gates}}))
    g = _report(d)["goodput"]
    assert g["goodput"] == 90  # the slow plain chats and the 2 s explanations now count
    assert g["targets"] == {"chat_ms": 700.0, "sentence_ms": 2500.0, "token_ms": 3500.0, "source": "gates"}


def _summary(gates: list[dict[str, Any]], **extra: Any) -> str:
    """A summary.json whose goodput figures and gate values lie: the report must not read them."""
    lies = [{**g, "value": 99.0, "pass": True} for g in gates]
    chat = {"requests": 100, "goodput": 100, "goodput_rps": 99.0, "goodput_share": 1.0}
    return json.dumps({"slo": {"gates": lies, "pass": True}, "chat": chat, **extra})


def test_goodput_gates_are_judged_on_the_records_not_the_summary(tmp_path: Path) -> None:
    """The SLO table's goodput gates come from the records by hif.harness.goodput's definition
    (70 good of 100), per second of the runner's load window (10 s here, the records span 9.9 s)."""
    d = _goodput_records(tmp_path)
    gates = [
        {"name": "goodput_rps", "threshold": 6.9, "op": ">="},  # 70 / 10 = 7.0: holds
        {"name": "goodput_share", "threshold": 0.75, "op": ">="},  # 0.70: fails
    ]
    (d / SUMMARY_FILE).write_text(_summary(gates, started_at=T0 - 0.05, load_ended_at=T0 + 9.95))
    data = _report(d)
    slo = {g["name"]: g for g in data["slo"]["gates"]}
    assert slo["goodput_rps"]["value"] == pytest.approx(7.0) and slo["goodput_rps"]["pass"] is True
    assert slo["goodput_share"]["value"] == pytest.approx(0.7) and slo["goodput_share"]["pass"] is False
    assert data["slo"]["pass"] is False  # though the summary says every gate passed
    assert data["goodput"]["goodput_rps"] == slo["goodput_rps"]["value"]  # one figure, both places
    assert data["goodput"]["goodput"] == 70
    md = render_markdown(data, {})
    assert "| goodput_share | >= 75.00% | 70.00% | **FAIL** |" in md
    assert "| goodput_rps | >= 6.90 req/s | 7.00 req/s | pass |" in md


@pytest.mark.parametrize("started", [None, T0 + 5.0])
def test_goodput_per_second_falls_back_to_the_records_span(tmp_path: Path, started: float | None) -> None:
    """No load window in summary.json, or one that starts after the first record (files appended to
    by several runs): the records' span (9.9 s) is the only honest denominator."""
    d = _goodput_records(tmp_path)
    window = {} if started is None else {"started_at": started, "load_ended_at": T0 + 10.0}
    gates = [{"name": "goodput_rps", "threshold": 7.05, "op": ">="}]
    (d / SUMMARY_FILE).write_text(_summary(gates, **window))
    data = _report(d)
    (gate,) = data["slo"]["gates"]
    assert gate["value"] == pytest.approx(70 / 9.9) and gate["pass"] is True
    assert data["goodput"]["goodput_rps"] == pytest.approx(70 / 9.9)


def test_chaos_window_carries_the_explanation_lane_and_recovers_per_lane(tmp_path: Path) -> None:
    """A hard shed for 20 s in a light run: complete share falls to 0, shed rises to 100 %, and the
    explanation lane recovers after the window while the chat lane never moved."""
    chats, traces = [], []
    for i in range(900):  # 10 chats/s for 90 s, all attached
        ts, tid = T0 + i / 10, f"t{i}"
        shed = 30 <= i / 10 < 50
        chats.append(_chat(ts, tid, 50.0, "shed" if shed else "queued"))
        traces.append({"ts": ts, "trace_id": tid, "state": "shed" if shed else "complete",
                       "granularity": "sentence", "sla_ms": 0.0 if shed else 300.0})  # fmt: skip
    d = _write(tmp_path, chats, traces)
    events = [
        {"ts": T0 + 30, "action": "enable", "flag": "rate-limit-spike", "params": {"severity": "hard"}},
        {"ts": T0 + 50, "action": "disable", "flag": "rate-limit-spike", "params": {}},
    ]
    (d / CHAOS_EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
    data = _report(d)
    assert data["saturation"]["saturated"] is False  # the shed is the fault's, not the baseline's
    (w,) = data["chaos"]["windows"]
    assert w["explanations_masked"] is False
    pre, during, post = (w[k]["explanations"] for k in ("pre", "during", "post"))
    assert (pre["complete_rate"], during["complete_rate"], post["complete_rate"]) == (1.0, 0.0, 1.0)
    assert during["shed_rate"] == 1.0
    assert w["delta"]["during"]["complete_rate"] == -1.0
    assert w["during"]["chat"]["goodput_share"] == 0.0
    assert w["pre"]["chat"]["goodput_share"] == 1.0
    assert w["recover"]["explanations"]["recovered"] is True
    assert w["recover"]["explanations"]["s"] <= data["run"]["bucket_s"]
    md = render_markdown(data, {})
    assert "100.00% / 0.00% / 100.00%" in md  # complete share pre / during / post


def test_explainer_metrics_read_now_are_labelled_now(tmp_path: Path) -> None:
    d = fake_explainer(tmp_path, seconds=60, offered=40, capacity=8)
    text = 'explainer_queue_lag_seconds 12.5\nexplainer_jobs_total{state="complete"} 480\n'
    settings = report.ReportSettings(results_dirs=(d,), metrics_url_explainer="http://x/metrics")
    data = report.build_report([d], settings, fetch=lambda _u: text)
    assert data["saturation"]["explainer_now"] == {"queue_lag_s": 12.5, "jobs_total": {"complete": 480.0}}
    head = render_markdown(data, {}).split("## ")[0]
    assert "queue lag now (at report time): 12.5 s" in head
