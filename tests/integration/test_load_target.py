"""The load runner against the scripted target: known delays, stalls, errors and trace lifecycles.

The target (``hif.harness.target``) answers after a scripted delay, so percentiles, intended-start
latency under a stall, drops and explanation SLAs have known true values to assert against.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hif.chaos import Fault, apply_change
from hif.harness import EXIT_SLO_FAILED, LoadSettings, LoadSummary, records, run_load
from hif.harness.stats import merge_window
from hif.harness.target import TargetScript, TargetServer
from tests.conftest import free_port
from tests.integration._procs import Process, http_ready, start
from tests.schemas import validate_results


@pytest.fixture(autouse=True)
def _private_chaos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "chaos" / "chaos.json"
    monkeypatch.setenv("CHAOS_CONTROL_PATH", str(path))
    monkeypatch.delenv("CHAOS_EVENT_LOG_PATH", raising=False)
    return path


def run(script: TargetScript, tmp_path: Path, **kw: Any) -> LoadSummary:
    async def go() -> LoadSummary:
        server = TargetServer(script)
        await server.start()
        try:
            settings = LoadSettings(
                base_url=server.url,
                results_dir=tmp_path / "results",
                live="off",
                **{"duration_seconds": 2, **kw},
            )
            return await run_load(settings)
        finally:
            await server.close()

    summary = asyncio.run(go())
    validate_results(tmp_path / "results")
    return summary


def lines(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    with open(tmp_path / "results" / name) as fh:
        return [json.loads(line) for line in fh]


def test_percentiles_match_the_scripted_delay(tmp_path: Path) -> None:
    summary = run(TargetScript(delay_ms=40), tmp_path, concurrency=4, duration_seconds=2)
    chat = summary.data["chat"]
    lat = chat["latency_ms"]
    assert 40.0 <= lat["p50_ms"] < 60.0
    assert 40.0 <= lat["p99_ms"] < 200.0
    assert 80 <= chat["requests"] <= 4 * 2 / 0.040 + 8  # 4 workers x 2 s / 40 ms, at most
    assert chat["error_rate"] == 0.0 and summary.exit_code == 0
    chats = lines(tmp_path, records.CHAT_FILE)
    assert len(chats) == chat["requests"]
    first = chats[0]
    assert first["v"] == records.CHAT_SCHEMA and first["status"] == 200 and first["error_class"] is None
    assert first["intended_ts"] <= first["ts"] and first["latency_ms"] >= 40.0
    # the interval log re-aggregates to exactly the summary's histogram
    hlog = tmp_path / "results" / records.HISTOGRAM_LOG_FILE
    assert merge_window([hlog], "chat.service").count == chat["requests"]
    assert merge_window([hlog], "chat.service").percentile(99) == pytest.approx(lat["p99_ms"], abs=0.01)
    on_disk = json.loads((tmp_path / "results" / records.SUMMARY_FILE).read_text())
    assert on_disk["chat"]["requests"] == chat["requests"]
    assert {"start_s", "rps", "p95_ms", "sentence_p95_ms"} <= set(on_disk["buckets"][0])


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_intended_start_latency_counts_a_stall(tmp_path: Path, mode: str) -> None:
    # The target stalls during the second half of every 2 s: half of all intended starts fall into a
    # stall and wait for its end, so the true intended-start p90 is 0.8 s. The service time of the
    # few requests actually in flight during a stall cannot show that (coordinated omission).
    rate = {"rps_limit": 200} if mode == "closed" else {"arrival_rate": 200}
    summary = run(
        TargetScript(delay_ms=2, stall_every_s=2.0, stall_s=1.0),
        tmp_path,
        concurrency=8,
        duration_seconds=4,
        **rate,
    )
    chat = summary.data["chat"]
    assert chat["error_rate"] == 0.0
    assert 650.0 <= chat["intended_latency_ms"]["p90_ms"] <= 950.0
    assert chat["latency_ms"]["p90_ms"] < 100.0
    assert chat["late"] > 0.3 * chat["requests"]
    # catching up owed slots after a stall is the server's doing, not a generator shortfall
    assert not [r for r in summary.data["generator"]["reasons"] if "achieved" in r]


def test_open_loop_drops_what_it_cannot_send(tmp_path: Path) -> None:
    summary = run(
        TargetScript(delay_ms=200),
        tmp_path,
        concurrency=2,
        arrival_rate=100,
        duration_seconds=2,
        timeout_seconds=0.5,
    )
    chat = summary.data["chat"]
    dropped = [c for c in lines(tmp_path, records.CHAT_FILE) if c["error_class"] == "dropped"]
    assert chat["dropped"] == len(dropped) > 50
    assert chat["by_error_class"]["dropped"] == len(dropped)
    assert chat["requests"] == len(lines(tmp_path, records.CHAT_FILE))


def test_attached_traces_are_polled_to_terminal_states(tmp_path: Path) -> None:
    script = TargetScript(delay_ms=1, explain_ms=100, token_explain_ms=300)
    summary = run(script, tmp_path, concurrency=4, attach_rate=1.0, granularity="mix", max_requests=60)
    expl = summary.data["explanations"]
    assert summary.data["chat"]["requests"] == 60 and summary.data["stopped_by"] == "max_requests"
    # rates count over the load window; the polls' drain comes after it
    assert summary.data["load_ended_at"] <= summary.data["ended_at"] and summary.data["drain_s"] > 0.1
    assert expl["attached"] == expl["traces"] == 60
    assert expl["by_state"]["complete"] == 60 and expl["expired_failed_rate"] == 0.0
    sla = expl["sla_ms"]
    assert sla["sentence"]["count"] + sla["token"]["count"] == 60
    assert 100.0 <= sla["sentence"]["p50_ms"] < 300.0
    assert 300.0 <= sla["token"]["p50_ms"] < 700.0
    assert expl["polling"]["requests"] > 60  # status polls + one graph fetch each
    out = lines(tmp_path, records.EXPLANATION_FILE)
    assert len(out) == 60
    assert all(o["graph_ok"] is True and o["sla_bound_ms"] <= 500.0 + 50.0 for o in out)
    chats = {c["trace_id"]: c for c in lines(tmp_path, records.CHAT_FILE)}
    assert all(chats[o["trace_id"]]["granularity"] == o["granularity"] for o in out)


def test_failed_and_orphaned_traces(tmp_path: Path) -> None:
    failed = run(
        TargetScript(explain_ms=10, explain_state="failed"), tmp_path, attach_rate=1.0, max_requests=10
    )
    assert failed.data["explanations"]["failed_rate"] == 1.0
    orphaned = run(
        TargetScript(explain_ms=60_000),
        tmp_path,
        attach_rate=1.0,
        max_requests=5,
        poll_deadline_seconds=0.3,
    )
    assert orphaned.data["explanations"]["by_state"]["orphaned"] == 5
    assert all(
        o["state"] == "orphaned" and o["sla_ms"] is None for o in lines(tmp_path, records.EXPLANATION_FILE)
    )


def test_errors_are_recorded_and_gate_the_run(tmp_path: Path) -> None:
    summary = run(
        TargetScript(error_rate=0.5, seed=1),
        tmp_path,
        concurrency=2,
        max_requests=400,
        slo=("error_rate=0.1",),
    )
    chat = summary.data["chat"]
    assert chat["requests"] == 400
    assert 0.4 < chat["error_rate"] < 0.6 and chat["by_error_class"]["http_5xx"] == chat["errors"]
    errors = [c for c in lines(tmp_path, records.CHAT_FILE) if c["status"] == 500]
    assert errors and errors[0]["error"] == "scripted failure"
    assert summary.exit_code == EXIT_SLO_FAILED and summary.data["slo"]["gates"][0]["pass"] is False


def test_chaos_flags_ride_on_every_record(tmp_path: Path, _private_chaos: Path) -> None:
    apply_change(enable=Fault(flag="slow-sae", percent=50, jitter_ms=100), path=_private_chaos)
    run(TargetScript(), tmp_path, max_requests=20)
    assert {tuple(c["chaos"]) for c in lines(tmp_path, records.CHAT_FILE)} == {("slow-sae",)}
    events = lines(tmp_path, records.CHAOS_EVENTS_FILE)
    assert events[0]["flag"] == "slow-sae" and events[0]["before_window"] is True


def test_append_mode_accumulates_segments(tmp_path: Path) -> None:
    first = run(TargetScript(), tmp_path, max_requests=30, run_id="seg-1")
    second = run(TargetScript(), tmp_path, max_requests=20, run_id="seg-2", append=True)
    assert (first.data["chat"]["requests"], second.data["chat"]["requests"]) == (30, 20)
    chats = lines(tmp_path, records.CHAT_FILE)
    assert [c["run"] for c in chats].count("seg-1") == 30 and len(chats) == 50
    assert merge_window([tmp_path / "results" / records.HISTOGRAM_LOG_FILE], "chat.service").count == 50


def test_processes_merge_exactly(tmp_path: Path) -> None:
    summary = run(
        TargetScript(delay_ms=5), tmp_path, concurrency=4, processes=2, duration_seconds=2, shard="2/2"
    )
    chat = summary.data["chat"]
    chats = lines(tmp_path, records.CHAT_FILE)
    assert summary.data["processes"] == 2 and len(chats) == chat["requests"] > 0
    assert {c["shard"] for c in chats} == {"3/4", "4/4"}  # shard 2/2 split over 2 processes
    hlog = tmp_path / "results" / records.HISTOGRAM_LOG_FILE
    assert merge_window([hlog], "chat.service").count == chat["requests"]
    assert sum(b["requests"] for b in summary.buckets) == chat["requests"]
    assert not list((tmp_path / "results").glob(".proc-*"))


def run_until_ticks(tmp_path: Path, n: int, **kw: Any) -> tuple[LoadSummary, list[dict[str, Any]]]:
    """A 60 s run (0.5 s buckets) that its own on_tick stops after ``n`` ticks."""
    ticks: list[dict[str, Any]] = []

    async def go() -> LoadSummary:
        server = TargetServer(TargetScript(delay_ms=2))
        await server.start()
        stop = asyncio.Event()

        def on_tick(view: dict[str, Any]) -> None:
            ticks.append(view)
            if len(ticks) == n:
                stop.set()  # only a live tick can stop a 60 s run early

        try:
            settings = LoadSettings(
                base_url=server.url,
                results_dir=tmp_path / "results",
                live="off",
                duration_seconds=60,
                bucket_seconds=0.5,
                **kw,
            )
            return await run_load(settings, stop=stop, on_tick=on_tick)
        finally:
            await server.close()

    return asyncio.run(go()), ticks


def test_processes_tick_live_with_merged_buckets(tmp_path: Path) -> None:
    """With --processes the parent sees each bucket while the run goes on, merged from all children."""
    summary, ticks = run_until_ticks(tmp_path, 4, concurrency=4, processes=2)
    assert summary.data["stopped_by"] == "stop" and summary.data["duration_s"] < 30
    starts = [t["start_s"] for t in ticks]
    assert len(starts) == len(set(starts)) >= 4  # each bucket once
    by_start = {b["start_s"]: b["requests"] for b in summary.buckets}
    assert {t["start_s"]: t["requests"] for t in ticks} == by_start  # live views = the merged summary
    assert sum(by_start.values()) == summary.data["chat"]["requests"] > 0


# --- the runbook entry point as a process -----------------------------------------------------


def start_target_process(log_dir: Path) -> tuple[Process, str]:
    """The scripted target as its own process (2 ms answers), once it answers /healthz."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "hif.harness.target", "--port", str(port), "--delay-ms", "2"]
    proc = start(cmd, name="target", log_dir=log_dir, ready=http_ready(f"{url}/healthz"), timeout_s=20)
    return proc, url


@pytest.fixture
def target_process(tmp_path: Path) -> Any:
    proc, url = start_target_process(tmp_path / "logs")
    try:
        yield url
    finally:
        proc.stop(timeout_s=10)


def runner(*args: str, log_dir: Path, script_form: bool = False) -> Process:
    head = (
        [sys.executable, "tests/load/load_runner.py"]
        if script_form
        else [sys.executable, "-m", "tests.load.load_runner"]
    )
    env = {**os.environ, "PYTHONPATH": ""}
    return start([*head, *args], name="load_runner", log_dir=log_dir, env=env, split_output=True)


def test_sigint_drains_and_writes_the_summary(tmp_path: Path, target_process: str) -> None:
    proc = runner(
        "--base-url",
        target_process,
        "--concurrency",
        "4",
        "--duration-seconds",
        "60",
        "--attach-rate",
        "0",
        "--results-dir",
        str(tmp_path),
        script_form=True,
        log_dir=tmp_path / "logs",
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / records.CHAT_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.signal(signal.SIGINT)
    out, err = proc.communicate(timeout_s=30)
    assert proc.returncode == 130, err  # interrupted, like the soak; the summary is still written
    line = json.loads(out.strip())  # stdout is exactly one JSON line
    assert line["requests"] > 0 and line["exit_code"] == 0
    summary = json.loads((tmp_path / records.SUMMARY_FILE).read_text())
    assert summary["stopped_by"] == "stop" and summary["duration_s"] < 30
    with open(tmp_path / records.CHAT_FILE) as fh:
        assert sum(1 for _ in fh) == summary["chat"]["requests"]


def test_preflight_failures_exit_2_with_one_line(tmp_path: Path, target_process: str) -> None:
    proc = runner(
        "--base-url",
        target_process,
        "--attach-rate",
        "0.5",
        "--features",
        "missing-fs",
        "--results-dir",
        str(tmp_path),
        log_dir=tmp_path / "logs",
    )
    out, err = proc.communicate(timeout_s=30)
    assert proc.returncode == 2 and out == ""
    assert err.strip().splitlines() == [
        f"hif: featureset 'missing-fs' is not served by {target_process}; served: sae-gpt4-2m; "
        "pass one of them with --features"
    ]
    assert not (tmp_path / records.CHAT_FILE).exists()  # stopped before any load
    proc = runner(
        "--base-url",
        f"http://127.0.0.1:{free_port()}",
        "--results-dir",
        str(tmp_path),
        log_dir=tmp_path / "logs",
    )
    _, err = proc.communicate(timeout_s=30)
    assert proc.returncode == 2 and err.startswith("hif: cannot reach")


def test_dataclass_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        LoadSettings().concurrency = 3  # type: ignore[misc]


def test_library_stop_event_and_ticks(tmp_path: Path) -> None:
    summary, ticks = run_until_ticks(tmp_path, 3, concurrency=2)
    assert summary.data["stopped_by"] == "stop" and summary.data["duration_s"] < 10
    assert len(ticks) >= 3 and all(t["end_s"] - t["start_s"] == pytest.approx(0.5) for t in ticks[:3])
    assert sum(b["requests"] for b in summary.buckets) == summary.data["chat"]["requests"]


def test_target_dying_mid_run_is_recorded_not_fatal(tmp_path: Path) -> None:
    proc, url = start_target_process(tmp_path / "logs")
    try:

        async def go() -> LoadSummary:
            asyncio.get_running_loop().call_later(1.0, proc.signal, signal.SIGKILL)
            settings = LoadSettings(
                base_url=url,
                results_dir=tmp_path / "results",
                live="off",
                duration_seconds=3,
                concurrency=2,
            )
            return await run_load(settings)

        summary = asyncio.run(go())
    finally:
        proc.stop(signal.SIGKILL, timeout_s=10)
    chat = summary.data["chat"]
    classes = chat["by_error_class"]
    assert chat["ok"] > 0 and classes.get("connect", 0) > 0
    # refused connects back off (50 ms doubling to 1 s): a handful per worker, not a busy loop
    assert classes["connect"] <= 2 * 8
    assert (tmp_path / "results" / records.SUMMARY_FILE).exists()
