"""The one way integration tests start processes: ``hif`` commands, runbook scripts, services.

Every process starts in its own session (so a stop reaches the whole tree: a supervisor and its
workers), writes stdout and stderr to files of its own under the test's folder (a pipe nobody reads fills
up and blocks the child), and is polled for readiness against a deadline. When a start or a
readiness check fails, the assertion message carries the tail of the process's log, so a CI
failure says why without a rerun. Teardown is SIGTERM to the group, then SIGKILL after a grace
period; :func:`stop_all` is the session's last resort for anything a test left running.

    with running(hif_cmd("upstream-sim", "--sim-port", str(port)), name="sim", log_dir=tmp_path,
                 ready=http_ready(f"http://127.0.0.1:{port}/healthz")) as sim:
        ...
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from signal import SIGKILL, SIGTERM
from typing import NoReturn

import pytest

from tests.conftest import http_ok

REPO = Path(__file__).resolve().parents[2]
LOG_TAIL_CHARS = 4000
STOP_GRACE_S = 20.0
_LIVE: set[Process] = set()


def hif_cmd(*args: str) -> list[str]:
    """``python -m hif.cli ARGS`` with this interpreter (so the worktree's ``hif`` is the one run)."""
    return [sys.executable, "-m", "hif.cli", *args]


class Process:
    """One started process in its own session; output in ``NAME.log`` (or ``NAME.out``/``NAME.err``)."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        name: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
        split_output: bool = False,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        name = _unused_name(log_dir, name)
        self.name, self.cmd = name, list(cmd)
        self.log_path = log_dir / f"{name}.log"
        self.out_path = log_dir / f"{name}.out" if split_output else self.log_path
        self.err_path = log_dir / f"{name}.err" if split_output else self.log_path
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if not split_output else err,
                start_new_session=True,
            )
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.proc.pid} rc={self.proc.returncode}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    # --- output ---------------------------------------------------------------------------------

    def stdout(self) -> str:
        return _read(self.out_path)

    def stderr(self) -> str:
        return _read(self.err_path)

    def log(self) -> str:
        """Everything the process wrote (stdout then stderr when they are kept apart)."""
        if self.out_path == self.err_path:
            return self.stdout()
        return f"{self.stdout()}\n--- stderr ---\n{self.stderr()}"

    def fail(self, message: str) -> NoReturn:
        """Fail the test with ``message`` and the tail of this process's log."""
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        tail = self.log()[-LOG_TAIL_CHARS:]
        pytest.fail(f"{message}\n--- {self.name} ({state}; {' '.join(self.cmd)}) ---\n{tail}", pytrace=False)

    # --- readiness ------------------------------------------------------------------------------

    def wait_ready(self, check: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.1) -> None:
        """Poll ``check`` until true; fail with the log if the process exits or the deadline passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            if check():
                return
            if not self.alive():
                self.fail(f"{self.name} exited before it was ready")
            if time.monotonic() > deadline:
                self.fail(f"{self.name} not ready within {timeout_s:.0f}s")
            time.sleep(interval_s)

    def wait_log(self, text: str, *, timeout_s: float) -> None:
        """Wait until ``text`` appears in the log."""
        self.wait_ready(lambda: text in self.log(), timeout_s=timeout_s, interval_s=0.2)

    # --- signals and teardown -------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """``sig`` to the process itself (SIGINT as a terminal's Ctrl-C would reach the leader)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    send_signal = signal  # Popen's name for it

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def terminate(self) -> None:
        """SIGTERM to the whole group, without waiting (stop many in parallel, then :meth:`stop`)."""
        self.signal_group(SIGTERM)

    def kill_group(self) -> None:
        """kill -9 of the whole tree, as a dying host would."""
        self.signal_group(SIGKILL)
        self.proc.wait(timeout=10)

    def wait(self, timeout_s: float) -> int:
        """The exit status; fails with the log when the process is still running at the deadline."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.fail(f"{self.name} still running after {timeout_s:.0f}s")

    def communicate(self, timeout_s: float) -> tuple[str, str]:
        """Wait for the exit, then (stdout, stderr) as text (like ``Popen.communicate``)."""
        self.wait(timeout_s)
        return self.stdout(), self.stderr()

    def stop(self, sig: int = SIGTERM, timeout_s: float = STOP_GRACE_S) -> int | None:
        """``sig`` to the leader (the group for SIGTERM), then SIGKILL to the group after ``timeout_s``.

        Returns the leader's exit status; None when it had to be killed.
        """
        code: int | None = None
        if self.alive():
            if sig == SIGTERM:
                self.signal_group(sig)
            else:
                self.signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(timeout=timeout_s)
        else:
            code = self.proc.returncode
        self.signal_group(SIGKILL)  # stragglers of the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        _LIVE.discard(self)
        return code


def start(
    cmd: Sequence[str],
    *,
    name: str,
    log_dir: Path,
    ready: Callable[[], bool] | None = None,
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    split_output: bool = False,
) -> Process:
    """Start ``cmd`` and wait until ``ready()`` (if given); on failure the process is stopped."""
    proc = Process(cmd, name=name, log_dir=log_dir, env=env, cwd=cwd, split_output=split_output)
    if ready is not None:
        try:
            proc.wait_ready(ready, timeout_s=timeout_s)
        except BaseException:
            proc.stop(timeout_s=5)
            raise
    return proc


@contextlib.contextmanager
def running(
    cmd: Sequence[str],
    *,
    name: str,
    log_dir: Path,
    ready: Callable[[], bool] | None = None,
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    stop_signal: int = SIGTERM,
    split_output: bool = False,
) -> Iterator[Process]:
    """:func:`start` for the length of a ``with`` block; stopped (group kill at the end) on exit."""
    proc = start(
        cmd,
        name=name,
        log_dir=log_dir,
        ready=ready,
        timeout_s=timeout_s,
        env=env,
        split_output=split_output,
    )
    try:
        yield proc
    finally:
        proc.stop(stop_signal)


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness check: ``url`` answers 2xx."""
    return lambda: http_ok(url)


def require_tool(name: str, package: str) -> str:
    """The path of a system tool. Without it the test skips, naming the package, except under
    ``CI=true``, where scripts/system-deps.sh must have installed it: there a skip would hide a
    broken setup, so the test fails."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} is not on PATH: install Debian's `{package}` (scripts/system-deps.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    return path


def stop_all() -> None:
    """Stop whatever a test left running (called once at the end of the session)."""
    for proc in list(_LIVE):
        proc.stop(timeout_s=5)


def _unused_name(log_dir: Path, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``...: a restart or a second run gets its own log files."""
    candidate, n = name, 1
    while any((log_dir / f"{candidate}{ext}").exists() for ext in (".log", ".out", ".err")):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
