"""``hif serve`` started from a folder that holds a package named ``hif``: the children still import
the installed one (they run ``python -P``, which keeps the working folder off ``sys.path``)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration._procs import REPO, start

pytestmark = pytest.mark.explainer
FAKE_LOADER = "tests.integration._fake_pipeline:load_pipeline"


def test_serve_from_a_folder_holding_a_hif_package(tmp_path: Path) -> None:
    shadow = tmp_path / "hif"  # as /tmp holds /tmp/hif, the default chaos folder
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")  # a package, so it would win over the real one
    (shadow / "chaos.json").write_text("{}")
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "CHAOS_CONTROL_PATH": str(shadow / "chaos.json")}
    # The parent as the installed ``hif`` script runs it: its own folder, not the cwd, on sys.path.
    cmd = [sys.executable, "-P", "-m", "hif.cli", "serve", "--port", str(free_port())]
    cmd += ["--metrics-port", "0", "--explainer-metrics-port", "0", "--data-dir", str(tmp_path / "data")]
    cmd += ["--pipeline-loader", FAKE_LOADER, "--tick-s", "0.1"]
    proc = start(cmd, name="serve-cwd", log_dir=tmp_path / "logs", env=env, cwd=tmp_path)
    try:
        proc.wait_log("hif serve: ready", timeout_s=180)
    finally:
        code = proc.stop(signal.SIGINT, timeout_s=60)
    assert code == 0, proc.log()[-2000:]
    assert "has no attribute" not in proc.log()
