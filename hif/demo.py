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
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hif import chaos
from hif.config import (
    add_options,
    build,
    chaos_control_path,
    option,
    positive,
    same_option,
)
from hif.errors import ConfigError, HarnessError, HifError
from hif.explainer.settings import ExplainerSettings
from hif.gateway.settings import GatewaySettings
from hif.harness.load.settings import DEFAULT_RESULTS_DIR, LoadSettings

READY_TIMEOUT_S = 300.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoSettings:
    """``hif demo``: every ``option`` is a CLI flag, ``HIF_*`` env var and file key (table ``[demo]``)."""

    SECTION: typing.ClassVar[str] = "demo"

    duration_seconds: float = same_option(LoadSettings, "duration_seconds", 60.0)
    concurrency: int = same_option(LoadSettings, "concurrency", 8)
    # Sized for one explainer worker on 2 CPU cores (~4-6 explanations/s): 20 chats/s x 0.15
    # offers ~3 explanations/s, so the chaos window, not plain overload, is what moves the SLOs.
    rps_limit: float = same_option(LoadSettings, "rps_limit", 20.0)
    attach_rate: float = same_option(LoadSettings, "attach_rate", 0.15)
    granularity: str = same_option(LoadSettings, "granularity", "mix")
    chaos_at_seconds: float = option(20.0, help="when the chaos window opens, seconds after the load starts")
    chaos_seconds: float = option(20.0, help="how long the chaos window stays open")
    port: int = same_option(GatewaySettings, "port", 8080)
    metrics_port: int = same_option(GatewaySettings, "metrics_port", 9091)
    explainer_metrics_port: int = same_option(ExplainerSettings, "explainer_metrics_port", 9090)
    results_dir: Path = same_option(LoadSettings, "results_dir", DEFAULT_RESULTS_DIR)
    capacity: bool = option(
        False, help="instead of the load + chaos window, run a short capacity search and print its frontier"
    )

    def __post_init__(self) -> None:
        positive("duration_seconds", self.duration_seconds)
        positive("concurrency", self.concurrency)
        positive("rps_limit", self.rps_limit, allow_zero=True)
        positive("chaos_at_seconds", self.chaos_at_seconds, allow_zero=True)
        positive("chaos_seconds", self.chaos_seconds)
        if not 0.0 <= self.attach_rate <= 1.0:
            raise ConfigError("attach_rate", f"must be a fraction 0..1, got {self.attach_rate!r}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hif demo", description=__doc__.split("\n\n")[1])
    add_options(p, DemoSettings)
    p.add_argument("--config", type=Path, default=None, help="TOML file with these options (table [demo])")
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
    # -P: the working folder stays off sys.path, so a folder named hif there cannot shadow the package.
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "hif.cli",
        "serve",
        "--port",
        str(s.port),
        "--metrics-port",
        str(s.metrics_port),
        "--explainer-metrics-port",
        str(s.explainer_metrics_port),
        "--data-dir",
        str(data_dir),
    ]
    print(f"demo: starting the embedded system: {' '.join(cmd[3:])}", flush=True)
    return subprocess.Popen(cmd)


def _chaos_window(s: DemoSettings, stop: threading.Event) -> None:
    """Open the window at ``chaos_at_seconds``; the faults expire on their own (``expires_at``)."""
    if stop.wait(s.chaos_at_seconds):
        return
    now = time.time()
    expires = now + s.chaos_seconds
    # Every SAE pass slowed by 200-600 ms cuts the explainer's capacity below the ~3 explanations/s
    # the demo offers: the explanation lane's SLA p95 and complete share move visibly in the chaos
    # table, and the table shows when that lane recovers, while the chat lane does not move.
    chaos.apply_change(
        enable=chaos.Fault(flag=chaos.SLOW_SAE, percent=100, jitter_ms=400, expires_at=expires)
    )
    chaos.apply_change(enable=chaos.Fault(flag=chaos.DROP_S3, percent=10, expires_at=expires))
    print(
        f"demo: chaos window open for {s.chaos_seconds:.0f}s: slow-sae 100% / 400 ms, drop-s3 10%", flush=True
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


# ``hif demo --capacity``: two attach rates, at most six steps each of 2 + 10 s (about 4 minutes)
DEMO_CAPACITY = {
    "attach_rates": "0,0.3",
    "rate_min": 10.0,
    "rate_max": 160.0,
    "step_seconds": 10.0,
    "warmup_seconds": 2.0,
    "drain_seconds": 15.0,
    "max_steps": 6,
    "min_tail_samples": 5,
    "concurrency": 128,
}


def _capacity(s: DemoSettings, base_url: str, features: str) -> int:
    from hif.harness.capacity.cli import frontier_lines
    from hif.harness.capacity.run import run_capacity_sync
    from hif.harness.capacity.settings import CapacitySettings

    settings = CapacitySettings(
        base_url=base_url,
        features=features,
        metrics_url_gateway=f"http://127.0.0.1:{s.metrics_port}/metrics",
        metrics_url_explainer=f"http://127.0.0.1:{s.explainer_metrics_port}/metrics",
        results_dir=s.results_dir / "capacity",
        slo=("chat_p95_ms=500", "error_rate=0.01", "sentence_p95_ms=1500", "expired_failed_rate=0.05"),
        **DEMO_CAPACITY,  # type: ignore[arg-type]
    )
    data = run_capacity_sync(settings)
    print(f"demo: capacity search written to {settings.results_dir / 'capacity.md'}", flush=True)
    for line in frontier_lines(data):
        print(f"demo: {line}", flush=True)
    return int(data["exit_code"])


def run_demo(s: DemoSettings) -> int:
    """Start, load with a chaos window, report, stop. 0 once the report is written; 3 for an invalid run.
    With ``capacity``: start, search, print the frontier, stop (the search's exit code)."""
    from hif.explainer.featureset import load_registry
    from hif.harness import ReportSettings, run_load_sync, run_report

    base_url = f"http://127.0.0.1:{s.port}"
    work = Path(tempfile.mkdtemp(prefix="hif-demo-"))
    # The demo owns its chaos file so it never disturbs another run's flags.
    os.environ.setdefault("CHAOS_CONTROL_PATH", str(work / "chaos.json"))
    chaos.apply_change(disable_all=True)
    proc = _start_system(s, work / "data")
    stop = threading.Event()
    try:
        _wait_ready(f"{base_url}/readyz", proc, READY_TIMEOUT_S)
        if s.capacity:
            return _capacity(s, base_url, load_registry().default)
        window = threading.Thread(target=_chaos_window, args=(s, stop), daemon=True)
        window.start()
        summary = run_load_sync(
            LoadSettings(
                base_url=base_url,
                concurrency=s.concurrency,
                duration_seconds=s.duration_seconds,
                rps_limit=s.rps_limit,
                attach_rate=s.attach_rate,
                granularity=s.granularity,
                features=load_registry().default,
                results_dir=s.results_dir,
                slo=(
                    "chat_p95_ms=500",
                    "error_rate=0.01",
                    "sentence_p95_ms=1500",
                    "token_p95_ms=3500",
                    "expired_failed_rate=0.05",
                ),
            )
        )
        stop.set()
        run_report(
            ReportSettings(
                results_dirs=(s.results_dir,),
                chaos_path=chaos_control_path(),
                metrics_url_gateway=f"http://127.0.0.1:{s.metrics_port}/metrics",
                metrics_url_explainer=f"http://127.0.0.1:{s.explainer_metrics_port}/metrics",
            )
        )
    finally:
        stop.set()
        chaos.apply_change(disable_all=True)
        _stop_system(proc)
        # The demo's data folder is scratch: the results (and report) live in results_dir.
        shutil.rmtree(work, ignore_errors=True)
    print(f"demo: report written to {s.results_dir / 'report.md'} (and report.html beside it)", flush=True)
    for line in _first_lines(s.results_dir / "report.md"):
        print(f"demo: {line}", flush=True)
    print(f"demo: {_verdict(summary.data)}", flush=True)
    # A failed SLO gate is a finding of the run, not a failure of the demo: exit 0 once the report exists.
    return 0 if summary.valid else 3


def _first_lines(report_md: Path) -> list[str]:
    """The report's opening sentences (saturation, goodput): what to read first."""
    try:
        head = report_md.read_text().split("\n## ")[0]
    except OSError:
        return []
    return [ln.replace("**", "") for ln in head.splitlines() if ln.startswith("**")]


def _verdict(summary: Mapping[str, Any]) -> str:
    gates = summary.get("slo", {}).get("gates", [])
    failed = [str(gate.get("name")) for gate in gates if not gate.get("pass", True)]
    if not summary.get("generator", {}).get("valid", True):
        return "the run is INVALID: the load generator, not the system, was the bottleneck"
    return "every SLO gate passed" if not failed else f"SLO gates failed: {', '.join(sorted(failed))}"


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return run_demo(build(DemoSettings, cli=args, file=args.config))
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
