"""Helpers shared by the bench scripts (run as ``python bench/NAME.py``: this folder is on sys.path)."""

from __future__ import annotations

import os
import shutil
import socket


def free_port() -> int:
    """A loopback port the OS reported free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int) -> list[str]:
    """``taskset -c core`` when there are two cores to split, else nothing."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []
