"""Prometheus text: the one parser the runner, the soak and the report share, the scrape log, increase().

The load runner scrapes both ``/metrics`` endpoints when it starts, every ``SCRAPE_EVERY_S`` during
the run and when it ends, one JSON line per endpoint per scrape in ``metrics.jsonl`` (schema
``docs/schemas/metrics_scrape.schema.json``). The report reads the run's counters as
:func:`increase` between scrapes, so a server's earlier lifetime never shows up as this run's
sheds, and a restarted component (its counters back at zero) does not turn into a negative count.

>>> samples = parse("backpressure_actions_total{action=\\"shed\\",level=\\"hard\\"} 3\\n")
>>> samples[0].name, samples[0].labels, samples[0].value
('backpressure_actions_total', {'action': 'shed', 'level': 'hard'}, 3.0)
>>> increase([10.0, 14.0, 2.0, 5.0])  # a reset after 14: 4 + 2 + 3
9.0
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from prometheus_client.parser import text_string_to_metric_families

from hif.harness import records

Fetch = Callable[[str], str]
SCRAPE_EVERY_S = 5.0
FETCH_TIMEOUT_S = 3.0
# Histogram buckets are many lines and no report reads them; everything else is kept.
_SKIP_SUFFIXES = ("_bucket", "_created")


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def fetch_text(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return bytes(resp.read()).decode("utf-8", "replace")


def default_metrics_urls(base_url: str) -> tuple[str, str]:
    """The runbook's endpoints on the target's host: gateway :9091, explainer :9090."""
    host = urlsplit(base_url).hostname or "localhost"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:9091/metrics", f"http://{host}:9090/metrics"


def parse(text: str) -> list[Sample]:
    """Every sample of an exposition text (``ValueError`` when it is not one)."""
    return [
        Sample(s.name, dict(s.labels), float(s.value))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if not s.name.endswith(_SKIP_SUFFIXES)
    ]


def sum_by(samples: Iterable[Sample], name: str, *labels: str) -> dict[str, float]:
    """Values of ``name`` summed by the given labels (joined with ``/``), over every other label."""
    out: dict[str, float] = {}
    for s in samples:
        if s.name == name:
            key = "/".join(s.labels.get(label, "") for label in labels)
            out[key] = out.get(key, 0.0) + s.value
    return out


def gauge(samples: Iterable[Sample], name: str, how: str = "max") -> float | None:
    values = [s.value for s in samples if s.name == name]
    if not values:
        return None
    return sum(values) if how == "sum" else max(values)


def increase(values: Sequence[float]) -> float:
    """How much a counter grew over consecutive readings, as Prometheus' ``increase()`` counts it:
    a reading below the one before is a reset (the process restarted), counted from zero."""
    total = 0.0
    for before, now in itertools.pairwise(values):
        total += now - before if now >= before else now
    return total


def scrape(
    component: str, url: str, fetch: Fetch = fetch_text, *, now: float | None = None
) -> dict[str, Any]:
    """One scrape as a metrics.jsonl line; an endpoint that cannot be read says why (``ok: false``)."""
    ts = time.time() if now is None else now
    line: dict[str, Any] = {"v": records.METRICS_SCHEMA, "ts": ts, "component": component, "url": url}
    try:
        samples = parse(fetch(url))
    except Exception as exc:  # http.client's errors too: a scrape is evidence and never stops a run
        return {**line, "ok": False, "error": f"{type(exc).__name__}: {exc}", "samples": []}
    return {**line, "ok": True, "error": None, "samples": [[s.name, s.labels, s.value] for s in samples]}


def samples_of(line: Mapping[str, Any]) -> list[Sample]:
    return [Sample(str(n), dict(lb), float(v)) for n, lb, v in line.get("samples") or []]


def read_log(path: Path) -> list[dict[str, Any]]:
    """The lines of a metrics.jsonl (a torn last line is skipped), oldest first."""
    out = []
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as fh:
        for raw in fh:
            with contextlib.suppress(orjson.JSONDecodeError):
                line = orjson.loads(raw)
                if isinstance(line, dict) and "component" in line:
                    out.append(line)
    out.sort(key=lambda x: float(x.get("ts") or 0.0))
    return out


def counter_increase(
    lines: Iterable[Mapping[str, Any]],
    component: str,
    name: str,
    labels: Sequence[str],
    *,
    start: float | None = None,
    end: float | None = None,
) -> dict[str, Any]:
    """``{"values": {label: increase}, "scrapes": n, "from": ts, "to": ts}`` for one counter between
    the last scrape at or before ``start`` and the first at or after ``end`` (whole log when None).

    ``values`` is None when fewer than two good scrapes cover the interval: nothing can be said."""
    good = [x for x in lines if x.get("component") == component and x.get("ok")]
    ts = [float(x["ts"]) for x in good]
    lo = 0 if start is None else max([i for i, t in enumerate(ts) if t <= start], default=0)
    hi = (
        len(good) - 1
        if end is None
        else min([i for i, t in enumerate(ts) if t >= end], default=len(good) - 1)
    )
    chosen = good[lo : hi + 1]
    if len(chosen) < 2:
        return {"values": None, "scrapes": len(chosen), "from": None, "to": None}
    series = [sum_by(samples_of(x), name, *labels) for x in chosen]
    keys = sorted({k for s in series for k in s})
    values = {k: increase([s.get(k, 0.0) for s in series]) for k in keys}
    return {"values": values, "scrapes": len(chosen), "from": ts[lo], "to": ts[hi]}


class Scraper:
    """Scrapes ``urls`` at start, every ``every_s`` and at stop into ``path`` (appending)."""

    def __init__(
        self,
        urls: Mapping[str, str],
        path: Path,
        *,
        fetch: Fetch = fetch_text,
        every_s: float = SCRAPE_EVERY_S,
    ) -> None:
        self.urls, self.path, self.fetch, self.every_s = dict(urls), path, fetch, every_s
        self.scrapes = 0
        self.errors: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def scrape_all(self) -> None:
        if not self.urls:
            return
        lines = await asyncio.gather(
            *(asyncio.to_thread(scrape, name, url, self.fetch) for name, url in self.urls.items())
        )
        with open(self.path, "ab") as fh:
            for line in lines:
                fh.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
                if not line["ok"]:
                    self.errors[line["component"]] = line["error"]
        self.scrapes += 1

    async def start(self) -> None:
        await self.scrape_all()
        if self.urls:
            self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.scrape_all()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.scrape_all()

    def describe(self) -> dict[str, Any]:
        """What summary.json records about this run's scrapes."""
        return {
            "urls": self.urls,
            "file": records.METRICS_FILE if self.urls else None,
            "every_s": self.every_s,
            "scrapes": self.scrapes,
            "errors": self.errors,
        }
