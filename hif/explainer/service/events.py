"""Metric events from worker processes to the one exposition the supervisor serves.

Workers are separate processes, and the runbook wants a single ``:9090/metrics`` with plain gauge
names (``backpressure_level``, not one series per pid). So workers do not own a registry: they
emit small ``(metric, op, value, labels)`` events, and the supervisor applies them to its
:class:`~hif.metrics.ExplainerMetrics`. In unit tests the worker applies them directly.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Mapping
from typing import Any, Protocol

from hif.metrics import ExplainerMetrics

Event = tuple[str, str, float, tuple[tuple[str, str], ...]]
READY = "__ready__"  # a worker finished loading its pipeline


class MetricsSink(Protocol):
    def record(self, metric: str, op: str, value: float = 1.0, **labels: str) -> None: ...


def apply_event(metrics: ExplainerMetrics, event: Event) -> None:
    """Apply one event: ``metric`` is an ExplainerMetrics attribute, ``op`` inc/observe/set."""
    metric_name, op, value, labels = event
    metric: Any = getattr(metrics, metric_name)
    if labels:
        metric = metric.labels(**dict(labels))
    getattr(metric, op)(value)


class DirectSink:
    """Applies events to a registry in this process (tests, single-process use)."""

    def __init__(self, metrics: ExplainerMetrics) -> None:
        self.metrics = metrics

    def record(self, metric: str, op: str, value: float = 1.0, **labels: str) -> None:
        apply_event(self.metrics, (metric, op, value, tuple(sorted(labels.items()))))


class QueueSink:
    """Sends events to the supervisor over a multiprocessing queue; never blocks the worker."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def record(self, metric: str, op: str, value: float = 1.0, **labels: str) -> None:
        with contextlib.suppress(queue.Full, ValueError, OSError):  # metrics are best effort
            self.events.put_nowait((metric, op, float(value), tuple(sorted(labels.items()))))


def labels_of(event: Event) -> Mapping[str, str]:
    return dict(event[3])
