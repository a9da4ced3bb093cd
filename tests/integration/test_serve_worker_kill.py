"""kill -9 of one of two embedded explainer workers under a steady load: no capacity is lost.

The supervisor sees its child die at once and releases the dead worker's lease, so its job is
retried on the other worker (attempts 2) and the queue lag never reads the orphaned lease as
backlog: nothing is shed, at most one trace expires.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.integration import _worker_kill
from tests.integration.conftest import EmbeddedSystem, start_system

pytestmark = [pytest.mark.explainer, pytest.mark.slow]
TIMED_LOADER = "tests.integration._fake_pipeline:load_timed_pipeline"


class EmbeddedTarget:
    def __init__(self, system: EmbeddedSystem) -> None:
        self.system = system

    def send(self, i: int) -> tuple[str, str]:
        explanation = self.system.chat(f"worker kill {i}", granularity="sentence")["explanation"]
        return str(explanation["trace_id"]), str(explanation["state"])

    def holder(self) -> tuple[str, int] | None:
        with sqlite3.connect(self.system.data_dir / "hif.db") as conn:
            row = conn.execute(
                "SELECT trace_id, consumer FROM jobs WHERE deadline > ? AND consumer IS NOT NULL LIMIT 1",
                (time.time(),),
            ).fetchone()
        return (row[0], int(row[1].split(":")[1])) if row else None  # consumer = host:pid:index

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def final(self, trace_id: str) -> tuple[str, int] | None:
        body = self.system.status(trace_id)
        return (body["state"], int(body["attempts"])) if body["state"] not in ("queued", "running") else None


def test_a_killed_worker_costs_no_capacity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIF_FAKE_JOB_S", str(_worker_kill.JOB_S))
    flags = ("--workers", "2", "--lease-max-jobs", "1", "--pipeline-loader", TIMED_LOADER)
    with start_system(tmp_path, *flags, *_worker_kill.SLA_FLAGS) as system:
        outcome = _worker_kill.run(EmbeddedTarget(system))
    print(outcome.line())
    assert outcome.shed == 0, outcome.line()
    assert outcome.expired <= 1, outcome.line()
    assert (outcome.victim_state, outcome.victim_attempts) == ("complete", 2), outcome.line()
