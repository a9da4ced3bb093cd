"""Prometheus metrics for the gateway (:9091) and the explainer (:9090).

The runbook's names are a contract (dashboards and alerts query them): ``backpressure_level``,
``backpressure_actions_total``, ``explainer_stage_duration_seconds``, ``explainer_queue_lag_seconds``,
``explainer_jobs_total``. Metrics are created on a registry that is passed in (a fresh
``CollectorRegistry()`` per test), never on a module-level global.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server

# Latency buckets: sub-millisecond gateway overhead up to multi-second explanations.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    3.5,
    5.0,
    7.5,
    10.0,
    15.0,
    30.0,
    60.0,
)
STAGE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0)
STAGES = ("extract", "decode", "attribution", "persist")
OTHER_TENANT = "other"


class TenantLabels:
    """Bound tenant-label cardinality: the first ``max_tenants`` seen keep their name, the rest
    become ``other``, so a tenant flood cannot blow up the metric series."""

    def __init__(self, max_tenants: int = 20, known: Iterable[str] = ()) -> None:
        self._max = max_tenants
        self._seen: set[str] = set(known)
        self._lock = threading.Lock()

    def label(self, tenant: str | None) -> str:
        if not tenant:
            return "none"
        if tenant in self._seen:
            return tenant
        with self._lock:
            if len(self._seen) < self._max:
                self._seen.add(tenant)
                return tenant
        return OTHER_TENANT


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "gateway_requests_total",
            "HTTP requests by route, method and status",
            ["route", "method", "status", "tenant"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "HTTP request latency by route and status",
            ["route", "status", "tenant"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Upstream LLM call latency by outcome",
            ["upstream", "outcome"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time the gateway adds on top of the upstream call",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.admissions = Counter(
            "gateway_explanation_admissions_total",
            "Explanation opt-ins by outcome (admitted, shed, rejected, store_error)",
            ["outcome", "granularity", "tenant"],
            registry=registry,
        )
        self.enqueue_buffer = Gauge(
            "gateway_enqueue_buffer_jobs",
            "Explanation jobs accepted but not yet written to the queue",
            registry=registry,
        )
        self.in_flight = Gauge("gateway_requests_in_flight", "Requests being served", registry=registry)
        self.backpressure_level = Gauge(
            "gateway_backpressure_level",
            "Backpressure level the gateway currently sees (0/1/2)",
            registry=registry,
        )


class ExplainerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.stage_duration = Histogram(
            "explainer_stage_duration_seconds",
            "Time per explainer stage",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=registry,
        )
        self.queue_lag = Gauge(
            "explainer_queue_lag_seconds", "Age of the oldest job waiting for a worker", registry=registry
        )
        self.queue_depth = Gauge("explainer_queue_depth", "Jobs queued or leased", registry=registry)
        self.jobs = Counter(
            "explainer_jobs_total", "Jobs by terminal (or retried) state", ["state"], registry=registry
        )
        self.job_duration = Histogram(
            "explainer_job_duration_seconds",
            "Enqueue to terminal state, by granularity and state",
            ["granularity", "state"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.backpressure_level = Gauge(
            "backpressure_level", "Backpressure level: 0 none, 1 soft, 2 hard", registry=registry
        )
        self.backpressure_actions = Counter(
            "backpressure_actions_total",
            "Degradation-ladder actions applied",
            ["action", "level"],
            registry=registry,
        )
        self.chaos_active = Gauge(
            "chaos_fault_active", "Whether a chaos flag is active (1) or not (0)", ["flag"], registry=registry
        )
        self.chaos_injections = Counter(
            "chaos_injections_total", "Faults actually injected", ["flag"], registry=registry
        )
        self.persist_retries = Counter(
            "explainer_persist_retries_total", "Blob writes retried", registry=registry
        )
        self.attribution_method = Counter(
            "explainer_attribution_total",
            "Attribution runs by method (gradient, heuristic)",
            ["method"],
            registry=registry,
        )


def register_process_metrics(registry: CollectorRegistry) -> None:
    """Add ``process_resident_memory_bytes``, ``process_open_fds``, ... to ``registry`` (once).

    prometheus_client only puts them on its global registry; the soak's leak detection and the
    dashboard read them from each component's own /metrics. Idempotent: a second call is a no-op.
    """
    # The registry cannot spot the duplicate itself (ProcessCollector has no describe()), so look.
    if any(family.name == "process_resident_memory_bytes" for family in registry.collect()):
        return
    ProcessCollector(registry=registry)


class WorkerProcessCollector:
    """Memory and open fds of the explainer's worker processes, read from /proc at scrape time.

    The workers are spawned children that hold the model; the supervisor's own ``process_*``
    metrics do not see them, and a leak lives there. Exposes the sum over the live workers:
    ``explainer_workers_resident_memory_bytes``, ``explainer_workers_open_fds`` and
    ``explainer_workers_alive``. ``pids`` returns the current worker pids (a vanished pid is skipped).
    Linux only (/proc); elsewhere the sums are 0.
    """

    def __init__(self, pids: Callable[[], Iterable[int]], registry: CollectorRegistry | None = None) -> None:
        self._pids = pids
        self._page_bytes = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        if registry is not None:
            registry.register(self)

    def _one(self, pid: int) -> tuple[int, int] | None:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                rss_pages = int(fh.read().split()[1])
            return rss_pages * self._page_bytes, len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, ValueError, IndexError):
            return None

    def collect(self) -> Iterator[Metric]:
        found = [r for r in (self._one(pid) for pid in list(self._pids())) if r is not None]
        yield GaugeMetricFamily(
            "explainer_workers_resident_memory_bytes",
            "Resident memory of all live explainer worker processes",
            value=sum(r[0] for r in found),
        )
        yield GaugeMetricFamily(
            "explainer_workers_open_fds",
            "Open file descriptors of all live explainer workers",
            value=sum(r[1] for r in found),
        )
        yield GaugeMetricFamily(
            "explainer_workers_alive", "Explainer worker processes found alive", value=len(found)
        )


RESTARTS_ENV = "HIF_RESTARTS"


def restart_counter(registry: CollectorRegistry, component: str) -> Counter:
    """``component_restarts_total{component}``: restarts of a crashed component by its supervisor.

    ``hif serve`` restarts a crashed gateway or explainer as a new process and tells it how many
    restarts came before in ``HIF_RESTARTS``; the counter starts there, so the series keeps counting
    across the restart (Prometheus reads the drop to a new process as one more restart, not a reset).
    """
    counter = Counter(
        "component_restarts_total", "Restarts of a crashed component", ["component"], registry=registry
    )
    before = os.environ.get(RESTARTS_ENV, "0")
    counter.labels(component=component).inc(int(before) if before.isdigit() else 0)
    return counter


def serve_metrics(port: int, registry: CollectorRegistry, host: str = "127.0.0.1") -> object:
    """Start the Prometheus exposition server on a daemon thread; returns the server.

    Also exposes the process metrics of the serving process (memory, fds, CPU).
    """
    register_process_metrics(registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
