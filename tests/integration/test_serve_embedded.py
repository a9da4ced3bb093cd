"""``hif serve`` end to end: chat + explain at each granularity, graphs, restart keeping queued jobs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.integration.conftest import RELAXED_SLA, EmbeddedSystem, start_system

pytestmark = pytest.mark.explainer


@pytest.mark.parametrize("granularity", ["sentence", "token"])
def test_explain_reaches_complete_with_a_graph(embedded_system: EmbeddedSystem, granularity: str) -> None:
    answer = embedded_system.chat(granularity=granularity)
    explanation = answer["explanation"]
    assert explanation["state"] == "queued" and explanation["granularity"] == granularity
    body = embedded_system.wait_terminal(explanation["trace_id"])
    assert body["state"] == "complete", body
    assert body["granularity"] == {"requested": granularity, "resolved": granularity}
    assert body["attribution"] in ("gradient", "heuristic")
    assert set(body["stage_ms"]) == {"extract", "decode", "attribution", "persist"}
    status, graph = embedded_system.request("GET", explanation["graph_url"])
    assert status == 200
    assert {"metadata", "nodes", "links"} <= set(graph) and graph["nodes"]
    embedded_system.wait_metric("explainer_jobs_total", 1, state="complete")


def _sqlite_states(data_dir: Path) -> tuple[dict[str, str], int]:
    with sqlite3.connect(data_dir / "hif.db") as conn:
        states = dict(conn.execute("SELECT trace_id, state FROM traces").fetchall())
        (depth,) = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
    return states, int(depth)


@pytest.mark.slow
def test_restart_keeps_queued_jobs(tmp_path: Path) -> None:
    # Budgets far beyond the restart gap: otherwise HARD backpressure would (rightly) expire the
    # kept jobs early as unable to meet their budget, and this test is about keeping them.
    budgets = ("--sentence-budget-s", "300", "--token-budget-s", "300", "--trace-ttl-s", "600")
    flags = ("--workers", "1", "--lease-max-jobs", "1", *budgets)
    with start_system(tmp_path, *flags) as system:
        system.chaos("slow-sae", percent=100, jitter_ms=30_000)  # hold the worker on its first job
        ids = [system.chat(granularity="sentence")["explanation"]["trace_id"] for _ in range(3)]
        wait_until(lambda: system.status(ids[0])["state"] == "running", timeout_s=60)
        assert system.stop() == 0  # graceful: the job in hand is released, the rest stay queued
    states, depth = _sqlite_states(tmp_path)
    assert depth == 3 and all(states[t] in ("queued", "running") for t in ids), states
    system.calm()
    with start_system(tmp_path, *flags) as again:
        for trace_id in ids:
            assert again.wait_terminal(trace_id)["state"] == "complete"
    assert _sqlite_states(tmp_path)[1] == 0


@pytest.mark.slow
def test_kill_9_of_a_worker_mid_job_still_completes(tmp_path: Path) -> None:
    with start_system(tmp_path, "--workers", "1", "--visibility-timeout-s", "3", *RELAXED_SLA) as system:
        system.chaos("slow-sae", percent=100, jitter_ms=20_000)
        trace_id = system.chat(granularity="token")["explanation"]["trace_id"]
        wait_until(lambda: system.status(trace_id)["state"] == "running", timeout_s=60)
        with sqlite3.connect(tmp_path / "hif.db") as conn:
            (consumer,) = conn.execute("SELECT consumer FROM jobs WHERE trace_id=?", (trace_id,)).fetchone()
        pid = int(consumer.split(":")[1])  # consumer = host:pid:index of the worker holding the lease
        import os
        import signal

        os.kill(pid, signal.SIGKILL)
        system.calm()
        killed_at = time.monotonic()
        body = system.wait_terminal(trace_id, timeout_s=180)
        assert body["state"] == "complete", body
        assert body["attempts"] >= 2  # re-delivered after the visibility timeout
        print(f"recovered {time.monotonic() - killed_at:.1f}s after kill -9")
