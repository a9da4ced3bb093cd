"""The embedded system (``hif serve``) as a fixture: real processes, real sockets, free ports.

``embedded_system`` is one module-scoped system; ``start_system(tmp_path, *flags)`` starts a
private one (a context manager) for tests that kill or restart it. Each system has its own data
dir and chaos control file (``CHAOS_CONTROL_PATH``), so tests never see each other's chaos.
The explainer uses the real pipeline (``hif.explainer.core.pipeline``) and the registry's default
featureset (shipped in the package); a registry that cannot resolve it fails the tests, it does not skip them.

Processes start through :mod:`tests.integration._procs`; tests/conftest.py stops anything a test
left running at the end of the session. Under ``CI=true`` a missing system tool (redis-server,
prometheus, promtool, chromium) fails the run instead of skipping (``_procs.require_tool``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hif.chaos import Fault, apply_change
from hif.explainer.featureset import load_registry
from tests.conftest import free_port
from tests.integration._browser import Browser
from tests.integration._procs import Process, hif_cmd, require_tool, start

READY_TIMEOUT_S = 240.0
TERMINAL = ("complete", "failed", "expired", "shed", "rate_limited")
# Functional tests check outcomes, not the SLA: on a busy shared 2-core machine one real job can
# take seconds, and the default 1.5 s budget would (correctly) turn that into backpressure.
RELAXED_SLA = ("--sentence-budget-s", "30", "--token-budget-s", "60", "--trace-ttl-s", "120")


def default_featureset() -> str:
    """The featureset the running system will serve (``HIF_FEATURESETS`` may point elsewhere)."""
    path = os.environ.get("HIF_FEATURESETS")
    try:
        return load_registry(Path(path) if path else None).resolve(None).name
    except Exception as exc:
        pytest.fail(f"the default featureset cannot be loaded (the embedded suite needs it): {exc}")


@dataclasses.dataclass
class EmbeddedSystem:
    proc: Process
    base_url: str
    metrics_url: str
    explainer_metrics_url: str
    data_dir: Path
    chaos_path: Path
    featureset: str
    log_path: Path

    # --- HTTP -----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout_s: float = 30.0) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def chat(
        self, text: str = "Why is the sky blue? Answer in two sentences.", *, granularity: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": "sim", "messages": [{"role": "user", "content": text}]}
        if granularity:
            body["explain"] = {"granularity": granularity, "features": self.featureset}
        status, answer = self.request("POST", "/v1/chat/completions", body)
        assert status == 200, answer
        return dict(answer)

    def status(self, trace_id: str) -> dict[str, Any]:
        status, body = self.request("GET", f"/v1/traces/{trace_id}/status")
        assert status == 200, body
        return dict(body)

    def wait_terminal(self, trace_id: str, timeout_s: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = self.status(trace_id)
            if body["state"] in TERMINAL:
                return body
            time.sleep(0.1)
        pytest.fail(f"trace {trace_id} not terminal within {timeout_s}s: {body}")

    def metric(self, name: str, url: str | None = None, **labels: str) -> float:
        """One sample from a /metrics page (0.0 when absent)."""
        with urllib.request.urlopen(url or self.explainer_metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            sname, _, rest = series.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if sname == name and got == want:
                return float(value)
        return 0.0

    def wait_metric(self, name: str, at_least: float, timeout_s: float = 10.0, **labels: str) -> float:
        """Workers report to the supervisor a tick later than the trace changes: poll, don't race."""
        deadline = time.monotonic() + timeout_s
        while (value := self.metric(name, **labels)) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        assert value >= at_least, f"{name}{labels} = {value} < {at_least}"
        return value

    # --- chaos ----------------------------------------------------------------------------------

    def chaos(self, flag: str, **params: Any) -> None:
        apply_change(enable=Fault(flag=flag, **params), path=self.chaos_path)

    def calm(self) -> None:
        apply_change(disable_all=True, path=self.chaos_path)

    # --- processes ------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """Ctrl-C as a user would; the exit status, or None when it had to be killed."""
        return self.proc.stop(signal.SIGINT, timeout_s=timeout_s)


@contextlib.contextmanager
def start_system(
    data_dir: Path, *flags: str, ports: dict[str, int] | None = None
) -> Iterator[EmbeddedSystem]:
    """Run ``hif serve`` until the block ends; waits for its ready line (a deadline, not a sleep)."""
    featureset = default_featureset()
    ports = ports or {"port": free_port(), "metrics": free_port(), "explainer": free_port()}
    data_dir.mkdir(parents=True, exist_ok=True)
    chaos_path = data_dir / "chaos.json"
    env = {**os.environ, "CHAOS_CONTROL_PATH": str(chaos_path), "PYTHONUNBUFFERED": "1"}
    cmd = hif_cmd(
        "serve",
        "--port",
        str(ports["port"]),
        "--metrics-port",
        str(ports["metrics"]),
        "--explainer-metrics-port",
        str(ports["explainer"]),
        "--data-dir",
        str(data_dir),
        "--tick-s",
        "0.1",
        *flags,
    )
    proc = start(cmd, name=f"serve-{ports['port']}", log_dir=data_dir, env=env)
    system = EmbeddedSystem(
        proc,
        f"http://127.0.0.1:{ports['port']}",
        f"http://127.0.0.1:{ports['metrics']}/metrics",
        f"http://127.0.0.1:{ports['explainer']}/metrics",
        data_dir,
        chaos_path,
        featureset,
        proc.log_path,
    )
    try:
        proc.wait_log("hif serve: ready", timeout_s=READY_TIMEOUT_S)
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="module")
def embedded_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSystem]:
    """One ``hif serve`` shared by a test module (one worker, relaxed SLA)."""
    with start_system(tmp_path_factory.mktemp("serve"), "--workers", "1", *RELAXED_SLA) as system:
        yield system


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium (Debian's `chromium`) for every browser test of the session."""
    chromium = require_tool("chromium", "chromium")
    with Browser.launch(chromium, tmp_path_factory.mktemp("chromium")) as running:
        yield running
