"""``hif serve``: the embedded system in the foreground: gateway + explainer workers + stores.

    hif serve --port 8080 --metrics-port 9091 --explainer-metrics-port 9090 \\
        --data-dir /tmp/hif/data --keys keys.toml --upstream sim

Both halves run as child processes (``hif gateway`` and ``hif explainer``) sharing the SQLite
queue/trace store and the blob folder under ``--data-dir``. ``hif serve`` prints one line with the
URLs once every component is ready: the gateway's ``/readyz`` answers 200 *and* the explainer has
published a fresh heartbeat (its backpressure signal) to the trace store.

Ctrl-C / SIGTERM stop the gateway first (it flushes accepted explanation jobs to the queue), then
the explainer (workers finish or release their leases). Queued jobs stay in SQLite and are picked
up after a restart: nothing accepted is lost.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hif.config import add_options, build, flag_name
from hif.errors import HifError
from hif.explainer.settings import ExplainerSettings, FeaturesetSettings, SlaSettings
from hif.gateway.settings import GatewaySettings
from hif.store.base import BackpressureSignal
from hif.store.settings import StoreSettings
from hif.upstream.settings import SimulatorSettings

GATEWAY_SETTINGS = (GatewaySettings, SimulatorSettings, StoreSettings, SlaSettings, FeaturesetSettings)
EXPLAINER_SETTINGS = (ExplainerSettings, StoreSettings, SlaSettings, FeaturesetSettings)
READY_TIMEOUT_S = 300.0  # model load on a busy 2-core machine can take a while
HEARTBEAT_FRESH_S = 5.0
STOP_TIMEOUT_S = 45.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hif serve", description="Start the embedded HIF system in the foreground."
    )
    p.add_argument("--config", type=Path, default=None, help="TOML settings file (flags and HIF_* env win)")
    p.add_argument(
        "--ready-timeout-s", type=float, default=READY_TIMEOUT_S, help="give up starting after this"
    )
    add_options(p, *GATEWAY_SETTINGS, ExplainerSettings)
    return p


def forward_flags(args: argparse.Namespace, classes: Sequence[type]) -> list[str]:
    """The flags given on our command line that belong to ``classes``, in their CLI form.

    Only explicitly given flags travel: env ``HIF_*`` is inherited and ``--config`` is passed on,
    so each child resolves the same values with the same precedence.
    """
    given = vars(args)
    out: list[str] = ["--config", str(args.config)] if args.config else []
    seen: set[str] = set()
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name in seen or f.name not in given or "help" not in f.metadata:
                continue
            seen.add(f.name)
            value, flag = given[f.name], flag_name(f)
            if isinstance(value, bool):
                out.append(flag if value else "--no-" + flag.removeprefix("--"))
            else:
                out += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return out


@dataclasses.dataclass
class System:
    """The running children and how to reach them."""

    gateway: subprocess.Popen[bytes]
    explainer: subprocess.Popen[bytes]
    gateway_settings: GatewaySettings
    explainer_settings: ExplainerSettings
    store_settings: StoreSettings

    def urls(self) -> dict[str, str]:
        g, e = self.gateway_settings, self.explainer_settings
        urls = {"gateway": f"http://{g.host}:{g.port}"}
        if g.metrics_port:
            urls["metrics"] = f"http://{g.host}:{g.metrics_port}/metrics"
        if e.explainer_metrics_port:
            urls["explainer-metrics"] = f"http://{e.explainer_host}:{e.explainer_metrics_port}/metrics"
        return urls

    def gateway_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.urls()["gateway"] + "/readyz", timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def explainer_ready(self) -> bool:
        return explainer_heartbeat_fresh(self.store_settings)

    def exited(self) -> str | None:
        for name, proc in (("gateway", self.gateway), ("explainer", self.explainer)):
            if proc.poll() is not None:
                return f"{name} exited with code {proc.returncode}"
        return None

    def stop(self) -> None:
        """Gateway first (it flushes accepted jobs), then the explainer."""
        for proc in (self.gateway, self.explainer):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def hif_command() -> list[str]:
    """``python -P -m hif.cli``: ``-P`` keeps the working folder off ``sys.path``, so a folder that
    holds something named ``hif`` (``/tmp`` holds the default chaos folder ``/tmp/hif``) cannot
    shadow the installed package in a child. ``PYTHONPATH`` still applies."""
    return [sys.executable, "-P", "-m", "hif.cli"]


def explainer_heartbeat_fresh(store_settings: StoreSettings) -> bool:
    """Whether the explainer published its backpressure signal (its heartbeat) in the last 5 s."""
    from hif.store import open_state

    state = open_state(store_settings.state_url())
    try:
        signal_: BackpressureSignal | None = state.read_backpressure()
    except HifError:
        return False
    finally:
        state.close()
    return signal_ is not None and not signal_.stale(time.time(), HEARTBEAT_FRESH_S)


def start(args: argparse.Namespace, stop: threading.Event) -> System | None:
    """Start both children and wait until both are ready; None when ``stop`` came first."""
    gateway_settings = build(GatewaySettings, cli=args, file=args.config)
    explainer_settings = build(ExplainerSettings, cli=args, file=args.config)
    store_settings = build(StoreSettings, cli=args, file=args.config)
    for cls in (SimulatorSettings, SlaSettings, FeaturesetSettings):
        build(cls, cli=args, file=args.config)  # fail fast here, naming the key, not in a child
    store_settings.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = hif_command()
    # Own process groups: a terminal Ctrl-C reaches only us, and we stop the children in order.
    explainer = subprocess.Popen(
        [*cmd, "explainer", *forward_flags(args, EXPLAINER_SETTINGS)], start_new_session=True
    )
    gateway = subprocess.Popen(
        [*cmd, "gateway", *forward_flags(args, GATEWAY_SETTINGS), "--require-explainer"],
        start_new_session=True,
    )
    system = System(gateway, explainer, gateway_settings, explainer_settings, store_settings)
    deadline = time.monotonic() + args.ready_timeout_s
    while not stop.wait(0.2):
        problem = system.exited()
        if problem:
            system.stop()
            raise HifError(f"start-up failed: {problem}")
        if system.gateway_ready() and system.explainer_ready():
            return system
        if time.monotonic() > deadline:
            system.stop()
            raise HifError(f"not ready within {args.ready_timeout_s:.0f}s")
    system.stop()
    return None


def serve(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    system = start(args, stop)
    if system is None:
        return 0
    line = " ".join(f"{k}={v}" for k, v in system.urls().items())
    print(f"hif serve: ready {line} data-dir={system.store_settings.data_dir}", flush=True)
    code = 0
    while not stop.wait(0.5):
        problem = system.exited()
        if problem:
            print(f"hif: {problem}; stopping", file=sys.stderr, flush=True)
            code = 1
            break
    system.stop()
    print("hif serve: stopped", flush=True)
    return code


def main(argv: list[str]) -> int:
    args: Any = parser().parse_args(argv)
    try:
        return serve(args)
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return 2
