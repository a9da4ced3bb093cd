"""``hif serve``: the embedded system in the foreground: gateway + explainer workers + stores.

    hif serve --port 8080 --metrics-port 9091 --explainer-metrics-port 9090 \\
        --data-dir /tmp/hif/data --keys keys.toml --upstream sim

Both halves run as child processes (``hif gateway`` and ``hif explainer``) sharing the SQLite
queue/trace store and the blob folder under ``--data-dir``. ``hif serve`` prints one line with the
URLs once every component is ready: the gateway's ``/readyz`` answers 200 *and* the explainer has
published a fresh heartbeat (its backpressure signal) to the trace store.

A component that crashes after the system was ready is restarted with backoff (1 s, doubling, at
most 15 s), logged, and counted in ``component_restarts_total`` on its own ``/metrics``; one that
exits 6 times within 120 s keeps crashing, and the system stops with one line naming it. Exit
code 2 means a permanent problem (configuration, a port, a dependency): never restarted; the
system stops with one line. Every port is checked before the children start.

Ctrl-C / SIGTERM stop the gateway first (it flushes accepted explanation jobs to the queue), then
the explainer (workers finish or release their leases). Queued jobs stay in SQLite and are picked
up after a restart: nothing accepted is lost.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hif.config import add_options, build, ensure_port_free, flag_name
from hif.errors import HifError
from hif.explainer.settings import ExplainerSettings, FeaturesetSettings, SlaSettings
from hif.gateway.settings import GatewaySettings
from hif.metrics import RESTARTS_ENV
from hif.store.base import BackpressureSignal
from hif.store.settings import StoreSettings
from hif.upstream.settings import SimulatorSettings

GATEWAY_SETTINGS = (GatewaySettings, SimulatorSettings, StoreSettings, SlaSettings, FeaturesetSettings)
EXPLAINER_SETTINGS = (ExplainerSettings, StoreSettings, SlaSettings, FeaturesetSettings)
READY_TIMEOUT_S = 300.0  # model load on a busy 2-core machine can take a while
HEARTBEAT_FRESH_S = 5.0
STOP_TIMEOUT_S = 45.0
PERMANENT_EXIT = 2  # every hif command's exit code for configuration and start-up problems
RESTART_BACKOFF_S = 1.0  # doubles with each crash inside the window
RESTART_BACKOFF_MAX_S = 15.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 120.0


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
class Component:
    """One child: how to start it, the running process, and its recent restarts."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    recent: list[float] = dataclasses.field(default_factory=list)  # monotonic restart times

    def start(self) -> None:
        # Own process group: a terminal Ctrl-C reaches only us, we stop the children in order, and
        # a crashed component's leftovers (an explainer's workers) go with its group.
        env = {**os.environ, RESTARTS_ENV: str(self.restarts)}
        self.proc = subprocess.Popen(self.argv, start_new_session=True, env=env)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.kill_group()

    def kill_group(self) -> None:
        """SIGKILL what is left of the component's group (a dead supervisor's orphaned workers)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclasses.dataclass
class System:
    """The running children and how to reach them."""

    gateway: Component
    explainer: Component
    gateway_settings: GatewaySettings
    explainer_settings: ExplainerSettings
    store_settings: StoreSettings

    @property
    def components(self) -> tuple[Component, Component]:
        return (self.gateway, self.explainer)

    def urls(self) -> dict[str, str]:
        g, e = self.gateway_settings, self.explainer_settings
        scheme = "https" if g.tls_cert else "http"
        urls = {"gateway": f"{scheme}://{g.host}:{g.port}"}
        if g.metrics_port:
            urls["metrics"] = f"http://{g.metrics_host}:{g.metrics_port}/metrics"
        if e.explainer_metrics_port:
            urls["explainer-metrics"] = f"http://{e.explainer_host}:{e.explainer_metrics_port}/metrics"
        return urls

    def gateway_ready(self) -> bool:
        # Our own child on this machine: the probe asks whether it answers, not who it is, so a
        # self-signed --tls-cert must not keep the system from ever becoming ready.
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            url = self.urls()["gateway"] + "/readyz"
            with urllib.request.urlopen(url, timeout=1.0, context=context) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def explainer_ready(self) -> bool:
        return explainer_heartbeat_fresh(self.store_settings)

    def exited(self) -> str | None:
        for c in self.components:
            code = c.exit_code()
            if code is not None:
                return f"{c.name} exited with code {code}"
        return None

    def stop(self) -> None:
        """Gateway first (it flushes accepted jobs), then the explainer."""
        for c in self.components:
            c.stop()


class Watchdog:
    """Restarts a component that crashed after the system was ready, with backoff.

    Exit code 2 is a component's word for a permanent problem (configuration, a port, a
    dependency): never restarted. More than ``MAX_RESTARTS`` crashes within ``RESTART_WINDOW_S``
    means it keeps crashing: the system stops, naming it.
    """

    def __init__(self, system: System, stop: threading.Event) -> None:
        self.system, self.stop = system, stop

    def check(self) -> tuple[int, str] | None:
        """None while all is well (restarting what crashed); else (exit code, the one line)."""
        for c in self.system.components:
            code = c.exit_code()
            if code is None:
                continue
            if code == PERMANENT_EXIT:
                return 2, f"{c.name} exited with code 2 (a permanent problem, not restarted); stopping"
            now = time.monotonic()
            c.recent = [t for t in c.recent if now - t < RESTART_WINDOW_S]
            if len(c.recent) >= MAX_RESTARTS:
                return 1, (
                    f"{c.name} keeps crashing ({len(c.recent) + 1} exits within {RESTART_WINDOW_S:.0f}s, "
                    f"last with code {code}); stopping"
                )
            self._restart(c, code)
        return None

    def _restart(self, c: Component, code: int) -> None:
        backoff_s = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** len(c.recent))
        c.kill_group()
        c.restarts += 1
        c.recent.append(time.monotonic())
        log(f"{c.name} exited with code {code}; restart {c.restarts} in {backoff_s:.1f}s")
        if not self.stop.wait(backoff_s):
            c.start()


def log(message: str) -> None:
    print(f"hif serve: {message}", file=sys.stderr, flush=True)


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


def check_ports(gateway: GatewaySettings, explainer: ExplainerSettings) -> None:
    """Every port the children will listen on, checked here: a taken one is one line, exit 2."""
    ensure_port_free("gateway", gateway.host, gateway.port, "--port")
    ensure_port_free("gateway metrics", gateway.metrics_host, gateway.metrics_port, "--metrics-port")
    ensure_port_free(
        "explainer metrics",
        explainer.explainer_host,
        explainer.explainer_metrics_port,
        "--explainer-metrics-port",
    )


def start(args: argparse.Namespace, stop: threading.Event) -> System | None:
    """Start both children and wait until both are ready; None when ``stop`` came first."""
    gateway_settings = build(GatewaySettings, cli=args, file=args.config)
    explainer_settings = build(ExplainerSettings, cli=args, file=args.config)
    store_settings = build(StoreSettings, cli=args, file=args.config)
    for cls in (SimulatorSettings, SlaSettings, FeaturesetSettings):
        build(cls, cli=args, file=args.config)  # fail fast here, naming the key, not in a child
    check_ports(gateway_settings, explainer_settings)
    store_settings.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = hif_command()
    explainer = Component("explainer", [*cmd, "explainer", *forward_flags(args, EXPLAINER_SETTINGS)])
    gateway = Component(
        "gateway", [*cmd, "gateway", *forward_flags(args, GATEWAY_SETTINGS), "--require-explainer"]
    )
    explainer.start()
    gateway.start()
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
    watchdog = Watchdog(system, stop)
    while not stop.wait(0.5):
        ended = watchdog.check()
        if ended:
            code, line = ended
            print(f"hif: {line}", file=sys.stderr, flush=True)
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
