"""``hif explainer``'s supervisor: worker processes, one metrics exposition, sweeper, backpressure.

The supervisor never runs the model. It starts ``workers`` processes (``spawn``: torch and fork do
not mix), restarts one that dies (its leased jobs are released at once, so another worker retries
them), and every ``tick_s``:

- releases the leases of any consumer, on any host, whose heartbeat has been silent for
  ``SILENT_BEATS`` x ``consumer_heartbeat_s`` (a whole explainer killed elsewhere);
- applies the workers' metric events to the one registry served on ``:9090``;
- moves traces past their TTL to ``expired`` (``TraceStore.expire_due``), so nothing stays queued;
- computes the backpressure level from queue lag and depth (plus the ``rate-limit-spike`` chaos
  flag) and publishes it to the TraceStore. The signal's ``updated_at`` doubles as the fleet's
  heartbeat: it is published only once a worker has loaded its pipeline, so a fresh signal means
  "the explainer is ready" (the gateway's ``/readyz`` and ``hif serve`` check it).

SIGTERM/SIGINT stop the workers gracefully (each finishes or releases its jobs), then the signal is
withdrawn (published with ``updated_at = 0``, which every reader sees as stale).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry

from hif.chaos import FLAGS, RATE_LIMIT_SPIKE, ChaosReader
from hif.config import ensure_port_free
from hif.errors import PortInUseError
from hif.explainer.plan import SHED
from hif.explainer.service.backpressure import LEVEL_NAMES, BackpressureController, Thresholds
from hif.explainer.service.events import READY, Event, apply_event
from hif.explainer.service.process import consumer_name
from hif.explainer.settings import ExplainerSettings, FeaturesetSettings, SlaSettings
from hif.metrics import ExplainerMetrics, WorkerProcessCollector, restart_counter, serve_metrics
from hif.store import Stores, open_stores
from hif.store.base import SILENT_BEATS, BackpressureLevel, BackpressureSignal
from hif.store.settings import StoreSettings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
METRICS_FLAG = "--explainer-metrics-port"
RESTART_BACKOFF_S = 1.0


def _worker_entry(
    index: int,
    settings: ExplainerSettings,
    sla: SlaSettings,
    stores: StoreSettings,
    featuresets: FeaturesetSettings,
    events: Any,
) -> None:
    """Child process entry point (importable, as ``spawn`` requires)."""
    from hif.explainer.service.process import run_worker_process

    run_worker_process(index, settings, sla, stores, featuresets, events)


class Supervisor:
    def __init__(
        self,
        settings: ExplainerSettings,
        sla: SlaSettings,
        stores: StoreSettings,
        featuresets: FeaturesetSettings,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings, self.sla, self.store_settings, self.featuresets = settings, sla, stores, featuresets
        self.metrics = ExplainerMetrics(registry or CollectorRegistry())
        # The workers hold the model: expose their memory/fds (the soak's leak check reads them).
        WorkerProcessCollector(
            lambda: [p.pid for p in list(self.procs.values()) if p.pid], self.metrics.registry
        )
        self.restarts = restart_counter(self.metrics.registry, "explainer")
        self.controller = BackpressureController(Thresholds.from_settings(settings, sla))
        self.chaos = ChaosReader(heartbeat=True)  # hif chaos reports whether an explainer reads its file
        self._ctx = multiprocessing.get_context("spawn")
        self.events: Any = self._ctx.Queue(maxsize=100_000)
        self.procs: dict[int, Any] = {}
        self.ready_workers: set[int] = set()
        self._stopping = False
        self._shed_seen: int | None = None
        self.stores: Stores | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, then stop the workers and withdraw the ready signal."""
        self._serve_metrics()
        self.stores = open_stores(self.store_settings)
        for index in range(self.settings.workers):
            self._spawn(index)
        try:
            while not stop.wait(self.settings.tick_s):
                self.tick()
        finally:
            self.shutdown()

    def _serve_metrics(self) -> None:
        host, port, flag = self.settings.explainer_host, self.settings.explainer_metrics_port, METRICS_FLAG
        ensure_port_free("explainer metrics", host, port, flag)
        if port:
            try:
                serve_metrics(port, self.metrics.registry, host)
            except OSError as exc:  # taken between the check and the bind
                raise PortInUseError("explainer metrics", host, port, flag, str(exc)) from exc

    def _spawn(self, index: int) -> None:
        proc = self._ctx.Process(
            target=_worker_entry,
            name=f"hif-explainer-{index}",
            args=(index, self.settings, self.sla, self.store_settings, self.featuresets, self.events),
        )
        proc.start()
        self.procs[index] = proc
        self.ready_workers.discard(index)
        log.info("explainer worker %d started (pid %s)", index, proc.pid)

    def shutdown(self) -> None:
        self._stopping = True
        for proc in self.procs.values():
            if proc.is_alive() and proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs.values():
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning(
                    "worker pid %s did not stop in time; killing it (its jobs are re-delivered)", proc.pid
                )
                proc.kill()
                proc.join(timeout=5)
        self._drain()
        if self.stores is not None:
            with contextlib.suppress(Exception):  # best effort: a stale signal reads as "not ready" anyway
                self.stores.state.publish_backpressure(
                    BackpressureSignal(
                        level=BackpressureLevel.NONE, reason="explainer stopped", updated_at=0.0
                    )
                )
            self.stores.close()
        self.events.close()
        self.events.join_thread()

    # --- one tick ------------------------------------------------------------------------------

    def tick(self) -> None:
        self._drain()
        self._restart_dead()
        assert self.stores is not None
        try:
            self._sweep()
            self._backpressure()
        except Exception as exc:  # a store hiccup must not kill the supervisor
            log.warning("supervisor tick failed: %s", exc)

    def _drain(self) -> None:
        for _ in range(100_000):
            try:
                event: Event = self.events.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            if event[0] == READY:
                self.ready_workers.add(int(event[2]))
                continue
            try:
                apply_event(self.metrics, event)
            except (AttributeError, ValueError, TypeError) as exc:
                log.warning("bad metric event %r: %s", event, exc)

    def _restart_dead(self) -> None:
        if self._stopping:
            return
        for index, proc in list(self.procs.items()):
            if not proc.is_alive():
                log.warning(
                    "explainer worker %d (pid %s) exited with %s; restarting", index, proc.pid, proc.exitcode
                )
                self.ready_workers.discard(index)
                self._release_leases(index, proc.pid)
                self.restarts.labels(component="explainer-worker").inc()
                time.sleep(RESTART_BACKOFF_S if proc.exitcode not in (0, -9) else 0)  # no crash-loop spin
                self._spawn(index)

    def _release_leases(self, index: int, pid: int | None) -> None:
        if self.stores is None or pid is None:
            return
        try:
            released = self.stores.queue.release(consumer_name(index, pid))
        except Exception as exc:  # the visibility timeout still hands the jobs out later
            log.warning("could not release the leases of dead worker %d: %s", index, exc)
            return
        if released:
            log.warning("released %d job(s) of dead worker %d for retry", released, index)

    def _sweep(self) -> None:
        assert self.stores is not None
        silence_s = SILENT_BEATS * self.settings.consumer_heartbeat_s
        for consumer, n in self.stores.queue.release_silent(silence_s).items():
            log.warning("consumer %s silent for %.1fs: released %d job(s) for retry", consumer, silence_s, n)
        expired = self.stores.state.expire_due()
        if expired:
            self.metrics.jobs.labels(state="expired").inc(len(expired))

    def _backpressure(self) -> None:
        assert self.stores is not None
        q, now = self.stores.queue, time.time()
        lag, depth = q.oldest_age_s(now), q.depth()
        active = self.chaos.active(now)
        for flag in FLAGS:
            self.metrics.chaos_active.labels(flag=flag).set(1 if flag in active else 0)
        spike = active.get(RATE_LIMIT_SPIKE)
        signal_ = self.controller.evaluate(lag, depth, spike=spike.severity if spike else None, now=now)
        if spike is not None and signal_.reason.startswith("chaos"):
            self.metrics.chaos_injections.labels(flag=RATE_LIMIT_SPIKE).inc()
        self.metrics.queue_lag.set(lag)
        self.metrics.queue_depth.set(depth)
        self.metrics.backpressure_level.set(int(signal_.level))
        self._count_shed(signal_.level)
        if self.ready_workers:
            self.stores.state.publish_backpressure(signal_)

    def _count_shed(self, level: BackpressureLevel) -> None:
        """Gateways shed at admission; count them here so the ladder's metric shows every rung."""
        assert self.stores is not None
        shed = self.stores.state.counts().get("shed", 0)
        if self._shed_seen is not None and shed > self._shed_seen:
            self.metrics.backpressure_actions.labels(action=SHED, level=LEVEL_NAMES[level]).inc(
                shed - self._shed_seen
            )
        self._shed_seen = shed


def run_explainer(
    settings: ExplainerSettings,
    sla: SlaSettings,
    stores: StoreSettings,
    featuresets: FeaturesetSettings,
    *,
    stop: threading.Event | None = None,
) -> None:
    """Run the explainer fleet in the foreground until SIGTERM/SIGINT (or ``stop``)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    Supervisor(settings, sla, stores, featuresets).run(stop)
