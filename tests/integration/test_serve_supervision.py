"""``hif serve`` as a supervisor: clear start-up errors, restarts of a crashed component, and a stop
(one line) when a component keeps crashing or reports a permanent problem (exit 2)."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_until
from tests.integration._procs import hif_cmd, start
from tests.integration.conftest import EmbeddedSystem, start_system

pytestmark = pytest.mark.explainer
FAKE_LOADER = ("--pipeline-loader", "tests.integration._fake_pipeline:load_pipeline")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process (here: this one) listens on, as Prometheus would on 9090."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_serve_names_a_taken_port_and_its_flag(tmp_path: Path, taken_port: int) -> None:
    cmd = hif_cmd("serve", "--port", str(free_port()), "--metrics-port", "0")
    cmd += ["--explainer-metrics-port", str(taken_port), "--data-dir", str(tmp_path / "data")]
    proc = start(cmd, name="serve-port", log_dir=tmp_path, split_output=True)
    out, err = proc.communicate(timeout_s=60)
    assert proc.returncode == 2
    assert _errors(err) == [
        f"hif: explainer metrics: cannot listen on 127.0.0.1:{taken_port} (already in use); "
        "choose another port with --explainer-metrics-port"
    ], err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("command", "flag", "component"),
    [("explainer", "--explainer-metrics-port", "explainer metrics"), ("gateway", "--port", "gateway")],
)
def test_a_component_names_a_taken_port_and_its_flag(
    tmp_path: Path, taken_port: int, command: str, flag: str, component: str
) -> None:
    cmd = hif_cmd(command, flag, str(taken_port), "--data-dir", str(tmp_path / "data"))
    proc = start(cmd, name=command, log_dir=tmp_path, split_output=True)
    _, err = proc.communicate(timeout_s=60)
    assert proc.returncode == 2
    assert _errors(err) == [
        f"hif: {component}: cannot listen on 127.0.0.1:{taken_port} (already in use); "
        f"choose another port with {flag}"
    ], err


def _children(pid: int) -> dict[str, int]:
    """``hif serve``'s children by component name (their command line says which)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"hif.cli" in argv:
            found[argv[argv.index(b"hif.cli") + 1].decode()] = int(entry.name)
    return found


def _gateway_pid(system: EmbeddedSystem, not_pid: int = 0) -> int:
    pids: list[int] = []

    def new_gateway() -> bool:
        pid = _children(system.proc.pid).get("gateway", 0)
        pids.append(pid)
        return pid not in (0, not_pid)

    wait_until(new_gateway, timeout_s=60)
    return pids[-1]


def _ready(system: EmbeddedSystem) -> bool:
    try:
        return system.request("GET", "/readyz", timeout_s=2)[0] == 200
    except OSError:
        return False


@pytest.mark.slow
def test_a_crashed_gateway_is_restarted_and_counted(tmp_path: Path) -> None:
    with start_system(tmp_path, "--workers", "1", *FAKE_LOADER) as system:
        first = _gateway_pid(system)
        os.kill(first, signal.SIGKILL)
        second = _gateway_pid(system, not_pid=first)
        wait_until(lambda: _ready(system), timeout_s=60)
        body = system.chat(granularity="sentence")
        assert system.wait_terminal(body["explanation"]["trace_id"])["state"] == "complete"
        metrics = system.metric("component_restarts_total", system.metrics_url, component="gateway")
        assert (second != first, metrics, system.proc.alive()) == (True, 1.0, True)
        assert "gateway exited with code -9; restart 1 in 1.0s" in system.proc.log()


@pytest.mark.slow
def test_a_gateway_that_keeps_crashing_stops_the_system(tmp_path: Path) -> None:
    with start_system(tmp_path, "--workers", "1", *FAKE_LOADER) as system:
        pid = 0
        while system.proc.alive():
            try:
                pid = _gateway_pid(system, not_pid=pid)
            except BaseException:
                if system.proc.alive():
                    raise
                break
            os.kill(pid, signal.SIGKILL)
        assert system.proc.wait(60) == 1
        lines = [line for line in system.proc.log().splitlines() if line.startswith("hif: ")]
        assert lines == ["hif: gateway keeps crashing (6 exits within 120s, last with code -9); stopping"]


@pytest.mark.slow
def test_exit_2_is_permanent_and_never_restarted(tmp_path: Path) -> None:
    port = free_port()
    with start_system(tmp_path, "--workers", "1", *FAKE_LOADER, ports=_ports(port)) as system:
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            os.kill(_gateway_pid(system), signal.SIGKILL)
            wait_until(lambda: _bound(squatter, port), timeout_s=10)  # before the 1 s backoff ends
            squatter.listen()
            assert system.proc.wait(90) == 2
        log = system.proc.log()
        assert f"gateway: cannot listen on 127.0.0.1:{port} (already in use)" in log
        assert "hif: gateway exited with code 2 (a permanent problem, not restarted); stopping" in log
        assert log.count("restart ") == 1, log[-3000:]  # the kill -9 was restarted; exit 2 was not


def _ports(port: int) -> dict[str, int]:
    return {"port": port, "metrics": free_port(), "explainer": free_port()}


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True
