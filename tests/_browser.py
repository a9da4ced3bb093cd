"""Headless Chromium for the tests that open a page (report.html): the DOM after the page's
scripts ran, and a screenshot. Used through the ``chromium`` fixture in tests/conftest.py."""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from pathlib import Path

TIMEOUT_S = 90.0
# --virtual-time-budget lets the page's scripts and load event run before the dump; the rest
# keep a root container and a machine with no display or session bus working
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--no-first-run",
    "--virtual-time-budget=10000",
)


@dataclasses.dataclass(frozen=True)
class Chromium:
    path: str

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory(prefix="hif-chromium-") as profile:
            cmd = [self.path, *FLAGS, f"--user-data-dir={profile}", *args]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=True)

    def dump_dom(self, page: Path) -> str:
        """The page's DOM once loaded, as text."""
        return self._run("--dump-dom", page.resolve().as_uri()).stdout

    def screenshot(self, page: Path, out: Path, *, width: int = 1280, height: int = 2400) -> Path:
        self._run(f"--window-size={width},{height}", f"--screenshot={out.resolve()}", page.resolve().as_uri())
        return out
