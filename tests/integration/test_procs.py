"""The process helper itself: failures carry the log, teardown reaches the whole process group."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.integration._procs import require_tool, running, start

# A parent that starts a child in its own group, reports the child's pid, then waits on it; the
# parent ignores SIGTERM, so only the group-wide SIGKILL after the grace period can end the pair.
PARENT = """
import signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
child.wait()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child stays a zombie until its parent reaps it; a zombie is not running.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_a_process_that_dies_before_ready_fails_with_its_log(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('listening failed: port taken'); sys.exit(3)"]
    with pytest.raises(pytest.fail.Exception) as failure:
        start(cmd, name="doomed", log_dir=tmp_path, ready=lambda: False, timeout_s=30)
    message = str(failure.value)
    assert "doomed exited before it was ready" in message
    assert "exited 3" in message and "listening failed: port taken" in message


def test_a_deadline_fails_and_stops_the_process(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import time; print('still loading', flush=True); time.sleep(600)"]
    with pytest.raises(pytest.fail.Exception, match=r"(?s)slow not ready within 1s.*still loading"):
        start(cmd, name="slow", log_dir=tmp_path, ready=lambda: False, timeout_s=1)
    # start() stopped it: the log file's owner is gone (a second start gets its own files).
    again = start([sys.executable, "-c", "pass"], name="slow", log_dir=tmp_path)
    assert again.wait(timeout_s=30) == 0 and again.log_path.name == "slow-2.log"


def test_stop_kills_the_whole_group_even_when_the_leader_ignores_sigterm(tmp_path: Path) -> None:
    with running([sys.executable, "-c", PARENT], name="parent", log_dir=tmp_path) as parent:
        wait_until(lambda: parent.stdout().strip().isdigit(), timeout_s=30)
        child_pid = int(parent.stdout())
        assert _alive(child_pid)
        code = parent.stop(timeout_s=1)
    assert code is None  # it did not exit on SIGTERM: it was killed
    wait_until(lambda: not _alive(child_pid), timeout_s=10)


def test_split_output_keeps_stdout_apart(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('{\"ok\": 1}'); print('a warning', file=sys.stderr)"]
    proc = start(cmd, name="two", log_dir=tmp_path, split_output=True)
    out, err = proc.communicate(timeout_s=30)
    assert (out, err) == ('{"ok": 1}\n', "a warning\n")


def test_a_missing_tool_skips_outside_ci_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="install Debian's `no-such-package`"):
        require_tool("no-such-tool-hif", "no-such-package")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: no-such-tool-hif is not on PATH"):
        require_tool("no-such-tool-hif", "no-such-package")
