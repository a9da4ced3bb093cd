"""Shared test helpers: free loopback ports, readiness polled against a deadline, process cleanup."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._browser import Chromium

REPO = Path(__file__).resolve().parents[1]
# `hif serve` and `hif demo` start their children with `python -P` (a `hif` folder in the working
# directory must not shadow the package), so the children find this repository's `tests` package
# (the fake pipelines the integration tests load by name) only through PYTHONPATH.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it via port 0), never one this
    process handed out before: the OS may give a just-closed port again at once, and two servers
    told the same port (a gateway's and an explainer's metrics, say) fail to start."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port
    raise RuntimeError("no loopback port free that was not handed out already")


def wait_until(check: Callable[[], bool], *, timeout_s: float = 30.0, interval_s: float = 0.05) -> None:
    """Poll ``check`` until it is true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    pytest.fail(f"condition not met within {timeout_s}s: {getattr(check, '__name__', check)}")


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_http_ok(url: str, *, timeout_s: float = 60.0) -> None:
    wait_until(lambda: http_ok(url), timeout_s=timeout_s, interval_s=0.1)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_processes() -> Iterator[None]:
    """Processes started by ``tests.integration._procs`` that a test left running die with the session."""
    yield
    from tests.integration._procs import stop_all

    stop_all()


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Debian's chromium, headless (scripts/system-deps.sh installs it). Missing: the test skips,
    naming the package, except under CI=true, where it fails."""
    from tests.integration._procs import require_tool

    return Chromium(require_tool("chromium", "chromium"))
