"""Steps independent of each other: before one starts, the explainer's queue is empty and no
backpressure is on, as the /metrics endpoints say (a step never inherits its predecessor's backlog)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from hif.harness import prometheus

# gauge -> endpoint that exposes it; idle when every one that is exposed reads 0
IDLE_GAUGES = {
    "explainer_queue_depth": "explainer",
    "backpressure_level": "explainer",
    "gateway_backpressure_level": "gateway",
    "gateway_enqueue_buffer_jobs": "gateway",
}
POLL_S = 0.5


def busy(urls: Mapping[str, str], fetch: prometheus.Fetch = prometheus.fetch_text) -> dict[str, float] | None:
    """The non-zero idle gauges now (empty: idle); None when no endpoint could be read."""
    out: dict[str, float] = {}
    read = False
    for component, url in urls.items():
        try:
            samples = prometheus.parse(fetch(url))
        except Exception:  # an endpoint that is down says nothing about the queue
            continue
        read = True
        for name, where in IDLE_GAUGES.items():
            value = prometheus.gauge(samples, name, "sum") if where == component else None
            if value:
                out[name] = value
    return out if read else None


async def wait_idle(
    urls: Mapping[str, str], timeout_s: float, fetch: prometheus.Fetch = prometheus.fetch_text
) -> dict[str, Any]:
    """Poll until idle or ``timeout_s``; says how long it waited and what it last saw."""
    started = time.monotonic()
    while True:
        now = await asyncio.to_thread(busy, urls, fetch)
        waited = time.monotonic() - started
        if not now or waited >= timeout_s:
            return {
                "waited_s": round(waited, 3),
                "idle": now == {} or now is None,
                "metrics": now is not None,
                "busy": now or {},
            }
        await asyncio.sleep(POLL_S)
