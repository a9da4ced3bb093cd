"""Overload drives backpressure none -> soft -> hard and back, while the chat lane keeps answering."""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.integration.conftest import EmbeddedSystem, start_system

pytestmark = [pytest.mark.explainer, pytest.mark.slow]

FLOOD_JOBS = 150
FLOOD_THREADS = 6


def _timed_chat(system: EmbeddedSystem, granularity: str | None = None) -> tuple[float, str | None]:
    started = time.perf_counter()
    answer = system.chat(granularity=granularity)
    state = answer["explanation"]["state"] if granularity else None
    return time.perf_counter() - started, state


def _pending(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "hif.db") as conn:
        (n,) = conn.execute("SELECT COUNT(*) FROM traces WHERE state IN ('queued', 'running')").fetchone()
    return int(n)


def test_overload_soft_then_hard_and_back(tmp_path: Path) -> None:
    flags = (
        "--workers",
        "1",
        "--lease-max-jobs",
        "2",
        "--soft-depth",
        "8",
        "--hard-depth",
        "30",
        "--recover-hold-s",
        "0.5",
    )
    with start_system(tmp_path, *flags) as system:
        # Pin the service time (about 10 jobs/s at most) so the flood is several times capacity
        # on any machine, with or without a GPU.
        system.chaos("slow-sae", percent=100, jitter_ms=100)
        baseline = [_timed_chat(system)[0] for _ in range(20)]
        levels: list[int] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                level = int(system.metric("backpressure_level"))
                if not levels or levels[-1] != level:
                    levels.append(level)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with ThreadPoolExecutor(FLOOD_THREADS + 1) as pool:
            flood = [pool.submit(_timed_chat, system, "token") for _ in range(FLOOD_JOBS)]
            during = [pool.submit(_timed_chat, system) for _ in range(20)]
            results = [f.result() for f in flood]
            chat_during = [f.result()[0] for f in during]
        wait_until(lambda: _pending(tmp_path) == 0, timeout_s=120)
        wait_until(lambda: bool(levels) and levels[-1] == 0, timeout_s=60)
        done.set()
        watcher.join(timeout=5)
    assert 1 in levels and 2 in levels, levels
    assert levels.index(1) < levels.index(2), levels  # soft first, then hard
    states = [state for _, state in results]
    assert "shed" in states, states  # the gateway shed new attachments at hard
    p95 = statistics.quantiles(chat_during, n=20)[-1]
    print(
        f"levels {levels}; chat p50 baseline {statistics.median(baseline) * 1000:.1f} ms, "
        f"during overload {statistics.median(chat_during) * 1000:.1f} ms (p95 {p95 * 1000:.1f} ms); "
        f"explain states {dict((s, states.count(s)) for s in set(states))}"
    )
    assert p95 < 1.0  # the chat lane never waits on the sidecar (a loose bound for a shared machine)
