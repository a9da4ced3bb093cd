"""Goodput in summary.json, counted live, against the scripted target: the same count as the
definition applied to the written records, the same as the report's, and a floor gate that decides
the exit code both ways."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from hif.harness import EXIT_SLO_FAILED, LoadSettings, LoadSummary, goodput, records, run_load
from hif.harness.target import TargetScript, TargetServer
from tests.schemas import validate_results

# Sentence explanations end after 100 ms, token ones after 600 ms: with a 400 ms token gate every
# token trace is too slow, so goodput is every plain chat plus the attached sentence ones.
SCRIPT = TargetScript(delay_ms=2, explain_ms=100, token_explain_ms=600)
SLOS = ("token_p95_ms=400", "sentence_p95_ms=1500")


@pytest.fixture(autouse=True)
def _private_chaos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAOS_CONTROL_PATH", str(tmp_path / "chaos" / "chaos.json"))
    monkeypatch.delenv("CHAOS_EVENT_LOG_PATH", raising=False)


def run(out: Path, *slo: str, stream: bool = False, attach_rate: float = 0.5) -> LoadSummary:
    async def go() -> LoadSummary:
        server = TargetServer(SCRIPT)
        await server.start()
        try:
            settings = LoadSettings(
                base_url=server.url,
                results_dir=out,
                live="off",
                concurrency=4,
                duration_seconds=5,
                max_requests=120,
                attach_rate=attach_rate,
                granularity="mix",
                seed=3,
                metrics_url_gateway="off",
                metrics_url_explainer="off",
                slo=slo,
                stream=stream,
            )
            return await run_load(settings)
        finally:
            await server.close()

    summary = asyncio.run(go())
    validate_results(out)
    return summary


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def from_records(out: Path, targets: goodput.GoodputTargets) -> int:
    """The definition applied to the records on disk, independently of the runner's live count."""
    good_traces = {
        e["trace_id"]
        for e in _lines(out / records.EXPLANATION_FILE)
        if goodput.explanation_good(
            state=e["state"], granularity=e["granularity"], sla_ms=e["sla_ms"], targets=targets
        )
    }
    return sum(
        goodput.chat_good(
            status=c["status"], error_class=c["error_class"], latency_ms=c["latency_ms"], targets=targets
        )
        and (not c["attached"] or c["trace_id"] in good_traces)
        for c in _lines(out / records.CHAT_FILE)
    )


def test_live_goodput_matches_the_records_and_the_report(tmp_path: Path) -> None:
    from hif.harness.report.run import build_report

    summary = run(tmp_path, *SLOS)
    chat, expl = summary.data["chat"], summary.data["explanations"]
    assert summary.data["v"] == records.SUMMARY_SCHEMA == "hif.summary.v4"
    targets = goodput.GoodputTargets.from_slos({"token_p95_ms": 400.0, "sentence_p95_ms": 1500.0})
    assert chat["goodput_targets"] == {**targets.to_json(), "source": "gates"}
    by_gran = {g: sum(1 for e in _lines(tmp_path / records.EXPLANATION_FILE) if e["granularity"] == g)
               for g in ("sentence", "token")}  # fmt: skip
    assert by_gran["token"] > 0 and by_gran["sentence"] > 0 and expl["by_state"]["complete"] == expl["traces"]
    # every plain chat and every sentence-attached one is good; no token-attached one is
    assert chat["goodput"] == chat["requests"] - by_gran["token"] == from_records(tmp_path, targets)
    assert chat["goodput_share"] == pytest.approx(chat["goodput"] / chat["requests"], abs=1e-6)
    assert chat["goodput_rps"] == pytest.approx(chat["goodput"] / summary.data["duration_s"], rel=0.01)
    assert sum(b["goodput"] for b in summary.buckets) == chat["goodput"]
    report = build_report([tmp_path])
    assert report["goodput"]["goodput"] == chat["goodput"]


def test_attached_streamed_chats_count_when_their_trace_ends_in_time(tmp_path: Path) -> None:
    """The explanation arrives as the stream's last event (the gateway's shape, from the scripted
    target): every attached streamed chat is admitted, and counts only once its trace ends within
    its granularity's target (sentence 100 ms: yes; token 600 ms against a 400 ms gate: no)."""
    summary = run(tmp_path, *SLOS, stream=True)
    chat, expl = summary.data["chat"], summary.data["explanations"]
    chats = _lines(tmp_path / records.CHAT_FILE)
    attached = [c for c in chats if c["attached"]]
    token = sum(1 for c in attached if c["granularity"] == "token")
    assert chat["stream"]["streams"] == chat["requests"] == chat["ok"] == len(chats) > 0
    assert token > 0 and len(attached) - token > 0
    assert all(c["trace_id"] and c["explanation_state"] == "queued" for c in attached)
    assert expl["traces"] == len(attached) and expl["by_state"]["complete"] == expl["traces"]
    targets = goodput.GoodputTargets.from_slos({"token_p95_ms": 400.0, "sentence_p95_ms": 1500.0})
    assert chat["goodput"] == chat["requests"] - token == from_records(tmp_path, targets)
    assert sum(b["goodput"] for b in summary.buckets) == chat["goodput"]
    from hif.harness.report.run import build_report

    assert build_report([tmp_path])["goodput"]["goodput"] == chat["goodput"]


@pytest.mark.parametrize(("chat_ms", "all_good"), [(500.0, True), (0.001, False)])
def test_streamed_chats_count_by_their_end_to_end_latency(
    tmp_path: Path, chat_ms: float, all_good: bool
) -> None:
    summary = run(tmp_path, f"chat_p95_ms={chat_ms}", stream=True, attach_rate=0.0)
    chat = summary.data["chat"]
    assert chat["stream"]["streams"] == chat["requests"] == chat["ok"] > 0
    assert chat["goodput"] == (chat["requests"] if all_good else 0)
    assert chat["goodput"] == from_records(
        tmp_path, goodput.GoodputTargets.from_slos({"chat_p95_ms": chat_ms})
    )


@pytest.mark.parametrize(("floor", "rc", "verdict"), [("1", 0, True), ("100000", EXIT_SLO_FAILED, False)])
def test_a_goodput_floor_decides_the_exit_code(tmp_path: Path, floor: str, rc: int, verdict: bool) -> None:
    summary = run(tmp_path, f"goodput_rps>={floor}", "goodput_share>=0.2")
    gates = {g["name"]: g for g in summary.data["slo"]["gates"]}
    assert gates["goodput_rps"]["op"] == ">=" and gates["goodput_rps"]["pass"] is verdict
    assert gates["goodput_rps"]["value"] == summary.data["chat"]["goodput_rps"] > 0
    assert gates["goodput_share"]["pass"] is True
    assert summary.data["slo"]["pass"] is verdict and summary.exit_code == rc
    on_disk = json.loads((tmp_path / records.SUMMARY_FILE).read_text())
    assert on_disk["exit_code"] == rc and on_disk["slo"]["pass"] is verdict
    # the report judges the same gates on the records, by the same definition and window: it
    # agrees with the runner, and a summary that lies does not move it. (summary.json keeps the
    # window's ends to the millisecond: over this ~0.15 s run that is over 1 % of goodput_rps.)
    from hif.harness.report.run import build_report

    judged = {g["name"]: g for g in build_report([tmp_path])["slo"]["gates"]}
    width_s = float(on_disk["load_ended_at"]) - float(on_disk["started_at"])
    rounding = 0.0011 / width_s  # each end of the window is kept to the millisecond
    assert judged["goodput_rps"]["value"] == pytest.approx(gates["goodput_rps"]["value"], rel=2 * rounding)
    assert judged["goodput_share"]["value"] == pytest.approx(gates["goodput_share"]["value"], abs=1e-6)
    assert all(judged[n]["pass"] is gates[n]["pass"] for n in ("goodput_rps", "goodput_share"))
    on_disk["chat"].update(goodput=0, goodput_rps=0.0, goodput_share=0.0)
    for g in on_disk["slo"]["gates"]:
        g.update(value=1e9, **{"pass": True})
    (tmp_path / records.SUMMARY_FILE).write_text(json.dumps(on_disk))
    report = build_report([tmp_path])
    again = {g["name"]: g for g in report["slo"]["gates"]}
    assert {n: (g["value"], g["pass"]) for n, g in again.items()} == {
        n: (g["value"], g["pass"]) for n, g in judged.items()
    }
    assert (
        report["slo"]["pass"] is verdict and report["goodput"]["goodput"] == summary.data["chat"]["goodput"]
    )
