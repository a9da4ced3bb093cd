"""Helpers shared by the bench scripts (run as ``python bench/NAME.py``: this folder is on sys.path)."""

from __future__ import annotations

import os
import shutil
import socket
import sys


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
