"""Server health at each soak segment, read from the gateway's and the explainer's /metrics.

Parsed with the harness' one Prometheus parser (:mod:`hif.harness.prometheus`). An endpoint that
cannot be read is recorded as ``{"ok": false, "error": ...}`` for that segment and the soak goes on:
health is evidence, not a gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hif.harness.prometheus import Fetch, fetch_text, parse

# sample name -> (summary key, how samples of several series/processes combine)
HEALTH_SAMPLES: dict[str, tuple[str, str]] = {
    "process_resident_memory_bytes": ("rss_bytes", "sum"),
    "process_open_fds": ("open_fds", "sum"),
    "process_cpu_seconds_total": ("cpu_seconds", "sum"),
    "explainer_workers_resident_memory_bytes": ("workers_rss_bytes", "sum"),
    "explainer_workers_open_fds": ("workers_open_fds", "sum"),
    "explainer_queue_lag_seconds": ("queue_lag_s", "max"),
    "explainer_queue_depth": ("queue_depth", "max"),
    "backpressure_level": ("backpressure_level", "max"),
    "gateway_backpressure_level": ("backpressure_level", "max"),
    "gateway_requests_in_flight": ("in_flight", "sum"),
    "gateway_enqueue_buffer_jobs": ("enqueue_buffer", "sum"),
}
LABELLED_COUNTERS = {"backpressure_actions_total": ("action", "level"), "explainer_jobs_total": ("state",)}


def parse_health(text: str) -> dict[str, Any]:
    """The health figures in one exposition text; keys absent from the text are left out."""
    values: dict[str, float] = {}
    counters: dict[str, dict[str, float]] = {}
    for sample in parse(text):
        if sample.name in HEALTH_SAMPLES:
            key, how = HEALTH_SAMPLES[sample.name]
            old = values.get(key)
            values[key] = (
                sample.value
                if old is None
                else (old + sample.value if how == "sum" else max(old, sample.value))
            )
        elif sample.name in LABELLED_COUNTERS:
            label = "/".join(sample.labels.get(n, "") for n in LABELLED_COUNTERS[sample.name])
            bucket = counters.setdefault(sample.name.removesuffix("_total"), {})
            bucket[label] = bucket.get(label, 0.0) + sample.value
    return {**values, **counters}


def scrape_one(url: str, fetch: Fetch = fetch_text) -> dict[str, Any]:
    try:
        return {"ok": True, "url": url, **parse_health(fetch(url))}
    except (OSError, ValueError) as exc:  # URLError is an OSError
        return {"ok": False, "url": url, "error": f"{type(exc).__name__}: {exc}"}


def scrape(urls: Mapping[str, str], fetch: Fetch = fetch_text) -> dict[str, dict[str, Any]]:
    """``{"gateway": {...}, "explainer": {...}}`` for the given component -> URL map."""
    return {name: scrape_one(url, fetch) for name, url in urls.items()}
