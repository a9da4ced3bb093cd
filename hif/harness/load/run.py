"""The load runner's library API: one run, its summary and exit code.

>>> settings = LoadSettings(base_url="http://127.0.0.1:8080", concurrency=8,   # doctest: +SKIP
...                         duration_seconds=10, attach_rate=0.3, results_dir=Path("/tmp/r"))
>>> summary = run_load_sync(settings)                                          # doctest: +SKIP
>>> summary.exit_code, summary.data["chat"]["latency_ms"]["p95_ms"]            # doctest: +SKIP

``run_load`` is also what the soak runner calls in-process, segment after segment: pass
``append=True`` (files grow instead of being truncated) and a ``run_id`` per segment; each
returned :class:`~hif.harness.load.summary.LoadSummary` carries its own per-``bucket_seconds``
time series.
"""

from __future__ import annotations

import asyncio

from hif.harness.client import new_event_loop
from hif.harness.load.engine import Engine
from hif.harness.load.procs import run_processes
from hif.harness.load.settings import LoadSettings
from hif.harness.load.summary import LoadSummary, TickCallback


async def run_load(
    settings: LoadSettings, *, stop: asyncio.Event | None = None, on_tick: TickCallback | None = None
) -> LoadSummary:
    """Pre-flight, offer load for ``duration_seconds`` (or until ``stop`` is set), drain, write files.

    ``on_tick`` receives each finished time bucket (the same dict as ``summary["buckets"][i]``).
    Raises :class:`~hif.errors.PreflightError` before any load when the target is unusable.
    With ``processes > 1`` the workers run in child processes and this call merges their results.
    """
    if settings.processes > 1:
        return await run_processes(settings, stop=stop, on_tick=on_tick)
    return await Engine(settings, stop=stop, on_tick=on_tick).run()


def run_load_sync(settings: LoadSettings, *, stop: asyncio.Event | None = None) -> LoadSummary:
    """:func:`run_load` on a fresh (uvloop when available) event loop."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(run_load(settings, stop=stop))
    finally:
        loop.close()
