"""``hif demo``: the main job in one command.

Starts the embedded system (``hif serve`` on a fresh data folder), offers a short load with
explanations attached, opens a chaos window in the middle of it (slow SAE + dropped blob writes,
which expire by themselves), then writes ``report.json`` and ``report.md`` with the chaos impact
and stops the system. Everything runs on loopback; nothing is downloaded.

    hif demo --duration-seconds 60 --concurrency 16 --attach-rate 0.3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hif import chaos
from hif.config import chaos_control_path
from hif.errors import HarnessError, HifError

READY_TIMEOUT_S = 300.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoSettings:
    duration_seconds: float = 60.0
    concurrency: int = 8
    # Sized for one explainer worker on 2 CPU cores (~4-6 explanations/s): 20 chats/s x 0.15
    # offers ~3 explanations/s, so the chaos window, not plain overload, is what moves the SLOs.
    rps_limit: float = 20.0
    attach_rate: float = 0.15
    granularity: str = "mix"
    chaos_at_seconds: float = 20.0
    chaos_seconds: float = 20.0
    port: int = 8080
    metrics_port: int = 9091
    explainer_metrics_port: int = 9090
    results_dir: Path = Path("tests/load/results")


def _parser() -> argparse.ArgumentParser:
    d = DemoSettings()
    p = argparse.ArgumentParser(prog="hif demo", description=__doc__.split("\n\n")[1])
    p.add_argument("--duration-seconds", type=float, default=d.duration_seconds)
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--rps-limit", type=float, default=d.rps_limit, help="chat requests/s (0 = unlimited)")
    p.add_argument("--attach-rate", type=float, default=d.attach_rate)
    p.add_argument("--granularity", choices=("sentence", "token", "mix"), default=d.granularity)
    p.add_argument(
        "--chaos-at-seconds", type=float, default=d.chaos_at_seconds, help="when the chaos window opens"
    )
    p.add_argument("--chaos-seconds", type=float, default=d.chaos_seconds, help="how long it stays open")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--metrics-port", type=int, default=d.metrics_port)
    p.add_argument("--explainer-metrics-port", type=int, default=d.explainer_metrics_port)
    p.add_argument("--results-dir", type=Path, default=d.results_dir)
    return p


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError(f"hif serve exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise HarnessError(f"hif serve was not ready at {url} within {timeout_s:.0f}s")


def _start_system(s: DemoSettings, data_dir: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "hif.cli", "serve",
        "--port", str(s.port), "--metrics-port", str(s.metrics_port),
        "--explainer-metrics-port", str(s.explainer_metrics_port), "--data-dir", str(data_dir),
    ]
    print(f"demo: starting the embedded system: {' '.join(cmd[2:])}", flush=True)
    return subprocess.Popen(cmd)


def _chaos_window(s: DemoSettings, stop: threading.Event) -> None:
    """Open the window at ``chaos_at_seconds``; the faults expire on their own (``expires_at``)."""
    if stop.wait(s.chaos_at_seconds):
        return
    now = time.time()
    expires = now + s.chaos_seconds
    chaos.apply_change(enable=chaos.Fault(flag=chaos.SLOW_SAE, percent=50, jitter_ms=150, expires_at=expires))
    chaos.apply_change(enable=chaos.Fault(flag=chaos.DROP_S3, percent=10, expires_at=expires))
    print(
        f"demo: chaos window open for {s.chaos_seconds:.0f}s: slow-sae 50% / 150 ms, drop-s3 10%", flush=True
    )
    if not stop.wait(s.chaos_seconds):
        chaos.apply_change(disable_all=True)
        print("demo: chaos window closed", flush=True)


def _stop_system(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(s: DemoSettings) -> int:
    """Start, load with a chaos window, report, stop. 0 once the report is written; 3 for an invalid run."""
    from hif.explainer.featureset import load_registry
    from hif.harness.load import LoadSettings, run_load_sync
    from hif.harness.report import ReportSettings, run_report

    base_url = f"http://127.0.0.1:{s.port}"
    work = Path(tempfile.mkdtemp(prefix="hif-demo-"))
    # The demo owns its chaos file so it never disturbs another run's flags.
    os.environ.setdefault("CHAOS_CONTROL_PATH", str(work / "chaos.json"))
    chaos.apply_change(disable_all=True)
    proc = _start_system(s, work / "data")
    stop = threading.Event()
    try:
        _wait_ready(f"{base_url}/readyz", proc, READY_TIMEOUT_S)
        window = threading.Thread(target=_chaos_window, args=(s, stop), daemon=True)
        window.start()
        summary = run_load_sync(LoadSettings(
            base_url=base_url, concurrency=s.concurrency, duration_seconds=s.duration_seconds,
            rps_limit=s.rps_limit,
            attach_rate=s.attach_rate, granularity=s.granularity, features=load_registry().default,
            results_dir=s.results_dir,
            slo=("chat_p95_ms=500", "error_rate=0.01", "sentence_p95_ms=1500", "token_p95_ms=3500",
                 "expired_failed_rate=0.05"),
        ))
        stop.set()
        run_report(ReportSettings(
            results_dirs=(s.results_dir,), chaos_path=chaos_control_path(),
            metrics_url_gateway=f"http://127.0.0.1:{s.metrics_port}/metrics",
            metrics_url_explainer=f"http://127.0.0.1:{s.explainer_metrics_port}/metrics",
        ))
    finally:
        stop.set()
        chaos.apply_change(disable_all=True)
        _stop_system(proc)
        # The demo's data folder is scratch: the results (and report) live in results_dir.
        shutil.rmtree(work, ignore_errors=True)
    print(f"demo: report written to {s.results_dir / 'report.md'}", flush=True)
    print(f"demo: {_verdict(summary.data)}", flush=True)
    # A failed SLO gate is a finding of the run, not a failure of the demo: exit 0 once the report exists.
    return 0 if summary.valid else 3


def _verdict(summary: Mapping[str, Any]) -> str:
    gates = summary.get("slo", {}).get("gates", [])
    failed = [str(gate.get("name")) for gate in gates if not gate.get("pass", True)]
    if not summary.get("generator", {}).get("valid", True):
        return "the run is INVALID: the load generator, not the system, was the bottleneck"
    return "every SLO gate passed" if not failed else f"SLO gates failed: {', '.join(sorted(failed))}"


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = DemoSettings(**{k: v for k, v in vars(args).items()})
    try:
        return run_demo(settings)
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
