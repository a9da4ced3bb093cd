"""Helpers shared by the bench scripts (run as ``python bench/NAME.py``: this folder is on sys.path)."""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hif.store.base import Job

ROOT = Path(__file__).resolve().parent.parent
# The scripted target's stalls (hif.harness.target --stall-every-s / --stall-s): the
# coordinated-omission benches drive it with these and compute the truth from the same numbers.
STALL_PERIOD_S, STALL_S = 10.0, 1.0


def free_port() -> int:
    """A loopback port the OS reported free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int) -> list[str]:
    """``taskset -c core`` when there are two cores to split, else nothing."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []


def runner_cmd(url: str, concurrency: int, seconds: float, results: str, *extra: str) -> list[str]:
    """The load runner as the runbook starts it, pinned to core 1, quiet, into ``results``."""
    return [
        *pin(1),
        sys.executable,
        "-m",
        "tests.load.load_runner",
        "--base-url",
        url,
        "--concurrency",
        str(concurrency),
        "--duration-seconds",
        str(seconds),
        "--results-dir",
        results,
        "--live",
        "off",
        *extra,
    ]


def start_stalling_target(*flags: str) -> tuple[subprocess.Popen[str], str, float]:
    """``hif.harness.target`` on core 0, stalling STALL_S every STALL_PERIOD_S, with ``flags``
    (its answer's shape); returns the process, its URL and the stall origin it printed."""
    cmd = [
        *pin(0),
        sys.executable,
        "-m",
        "hif.harness.target",
        "--port",
        str(free_port()),
        *flags,
        "--stall-every-s",
        str(STALL_PERIOD_S),
        "--stall-s",
        str(STALL_S),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"(http://\S+) stall_origin=([\d.]+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"target did not start: {line!r}")
    return proc, m.group(1), float(m.group(2))


def stall_left_s(t: float, origin: float) -> float:
    """What is left of the stall at Unix time ``t`` (0 outside stalls)."""
    phase = (t - origin) % STALL_PERIOD_S
    return STALL_PERIOD_S - phase if phase >= STALL_PERIOD_S - STALL_S else 0.0


def wait_for_phase(origin: float, phase_s: float) -> None:
    """Start a run ``phase_s`` after a stall ends, so a run never ends in the middle of one."""
    time.sleep((phase_s - (time.time() - origin)) % STALL_PERIOD_S)


PROSE = (
    "the model reads each token and the sparse autoencoder finds features that explain what the gateway "
    "answered while the sidecar keeps latency low under load with budgets and backpressure"
)
WORDS = tuple(PROSE.split())


def explainer_job(
    rng: random.Random, granularity: str, i: int, *, budget_s: float, sentences: int = 3
) -> Job:
    """A job of the explainer benches: a prompt of one sentence, a completion of ``sentences``, drawn from
    PROSE's words by ``rng`` (seeded by the caller, so runs compare the same texts)."""
    from hif.store.base import Job  # here: the load benches import this module without hif on the path

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14))).capitalize() + "."

    return Job(
        trace_id=f"bench-{i}",
        tenant="bench",
        granularity=granularity,
        featureset="bench",
        prompt=sentence(),
        completion=" ".join(sentence() for _ in range(sentences)),
        created_at=0.0,
        expires_at=float("inf"),
        budget_s=budget_s,
    )
