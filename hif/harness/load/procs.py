"""``--processes N``: one engine per process (each on its own core), merged exactly afterwards.

The parent checks the target once, starts N spawned children that share one bucket grid (so
their time buckets line up), and waits. While they run, each child sends every finished bucket
(counters and encoded HDR histograms) up a pipe, and the parent shows one live view and calls
``on_tick`` with the merged bucket once every child has sent it. Each child writes its files into
``.proc-k/`` under the results dir plus its tally; the parent concatenates the JSONL files and the
histogram log into the results dir and adds the tallies' counters and HDR histograms (exact, no
averaged percentiles).
Process ``k`` of ``N`` under ``--shard i/M`` runs as shard ``(i-1)*N+k / M*N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import shutil
import signal
import time
from pathlib import Path
from typing import IO, Any

import orjson

from hif.errors import HarnessError
from hif.harness import records
from hif.harness.client import new_event_loop
from hif.harness.load.engine import Engine
from hif.harness.load.live import LiveView
from hif.harness.load.preflight import check_run
from hif.harness.load.results import ResultFiles, copy_chaos_events, write_summary
from hif.harness.load.settings import METRICS_OFF, LoadSettings, local_share
from hif.harness.load.summary import LoadSummary, TickCallback, build_summary
from hif.harness.load.tally import Bucket, Tally
from hif.harness.prometheus import Scraper

TALLY_FILE = "tally.json"
JOIN_GRACE_S = 30.0
PUMP_S = 0.1  # how often the parent reads the children's buckets


def child_settings(settings: LoadSettings, k: int, directory: Path, run_id: str) -> LoadSettings:
    i, m = settings.shard_index
    n = settings.processes
    return dataclasses.replace(
        settings,
        processes=1,
        shard=f"{(i - 1) * n + k}/{m * n}",
        results_dir=directory,
        append=False,
        live="off",  # the parent shows the merged view
        metrics_url_gateway=METRICS_OFF,  # and scrapes /metrics, once for the run
        metrics_url_explainer=METRICS_OFF,
        run_id=run_id,
    )


def _child(settings: LoadSettings, t0_s: float, k: int, ticks: Any) -> None:
    """Child process body: run one engine, stop on SIGINT/SIGTERM, leave the tally on disk."""

    def send(bucket: Bucket, polls_in_flight: int, chaos: list[str]) -> None:
        ticks.put((k, bucket.to_json(), polls_in_flight, list(chaos)))

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        engine = Engine(settings, stop=stop, t0_s=t0_s, on_bucket=send)
        await engine.run()
        return {
            "tally": engine.tally.to_json(),
            "started_s": engine.started_s,
            "ended_s": engine.ended_s,
            "load_ended_s": engine.load_ended_s,
            "stopped_by": engine.stopped_by,
        }

    loop = new_event_loop()
    try:
        result = loop.run_until_complete(main())
    finally:
        loop.close()
    (settings.results_dir / TALLY_FILE).write_bytes(orjson.dumps(result))


async def run_processes(
    settings: LoadSettings, *, stop: asyncio.Event | None, on_tick: TickCallback | None
) -> LoadSummary:
    featureset = await check_run(settings)
    if featureset:  # the children ask for what the parent chose, and say nothing more about it
        settings = dataclasses.replace(settings, features=featureset["used"])
    files = ResultFiles(settings.results_dir, append=settings.append, keep=settings.keep_files)
    scraper = Scraper(settings.metrics_urls(), settings.results_dir / records.METRICS_FILE)
    await scraper.start()
    t0_s = time.time()
    run_id = settings.run_id or time.strftime("%Y%m%dT%H%M%S", time.gmtime(t0_s))
    ctx = multiprocessing.get_context("spawn")
    # A SimpleQueue has no feeder thread: a child's put writes the pipe itself, and a child
    # never waits at exit for a parent that stopped reading.
    ticks = ctx.SimpleQueue()
    n = settings.processes
    live = LiveView(
        settings.live,
        title=f"hif load {run_id} ({n} processes, last {settings.bucket_seconds:g} s)",
        duration_s=settings.duration_seconds,
    )
    merger = LiveMerger(n, run_id, live, on_tick)
    dirs = [settings.results_dir / f".proc-{k}" for k in range(1, n + 1)]
    procs = []
    for k, d in enumerate(dirs, start=1):
        shutil.rmtree(d, ignore_errors=True)
        p = ctx.Process(
            target=_child,
            args=(child_settings(settings, k, d, run_id), t0_s, k, ticks),
            name=f"hif-load-{k}",
        )
        p.start()
        procs.append(p)
    pump = asyncio.ensure_future(_pump(ticks, merger))
    try:
        await _wait(procs, stop, settings)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        _drain(ticks, merger)
        merger.flush()
        live.close()
        await scraper.stop()
    meta = {"featureset": featureset, "metrics": scraper.describe()}
    try:
        return _merge(dataclasses.replace(settings, run_id=run_id), files, dirs, t0_s, merger, meta)
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


class LiveMerger:
    """The parent's live view: each bucket merged exactly from every child's copy of it.

    A bucket is shown once every child has sent it, or has sent a later one (a child that
    ended early sends nothing more); :meth:`flush` shows whatever is left at the end.
    """

    def __init__(self, n: int, run_id: str, live: LiveView, on_tick: TickCallback | None) -> None:
        self.n, self.run_id, self.live, self.on_tick = n, run_id, live, on_tick
        self.pending: dict[float, dict[int, tuple[Bucket, int, list[str]]]] = {}
        self.latest: dict[int, float] = {}
        self.shown: set[float] = set()

    def add(self, k: int, bucket: dict[str, Any], polls_in_flight: int, chaos: list[str]) -> None:
        b = Bucket.from_json(bucket)
        key = round(b.start_s, 6)
        self.pending.setdefault(key, {})[k] = (b, polls_in_flight, chaos)
        self.latest[k] = max(self.latest.get(k, key), key)
        self._show(final=False)

    def flush(self) -> None:
        self._show(final=True)

    def _complete(self, key: float, parts: dict[int, Any]) -> bool:
        return all(k in parts or self.latest.get(k, key) > key for k in range(1, self.n + 1))

    def _show(self, *, final: bool) -> None:
        for key in sorted(self.pending):
            parts = self.pending[key]
            if not final and not self._complete(key, parts):
                return
            del self.pending[key]
            merged = Bucket(key, max(b.end_s for b, _, _ in parts.values()), "drain")
            for b, _, _ in parts.values():
                merged.merge(b)
                merged.phase = "load" if b.phase == "load" else merged.phase
            view = merged.view()
            view["run"] = self.run_id
            polls = sum(p for _, p, _ in parts.values())
            chaos = sorted({flag for _, _, flags in parts.values() for flag in flags})
            self.live.update(view, polls_in_flight=polls, chaos=chaos)
            self.shown.add(round(key, 3))  # as view["start_s"] gives it
            self.tick(view)

    def tick(self, view: dict[str, Any]) -> None:
        if self.on_tick is not None:
            try:
                self.on_tick(view)
            except Exception:  # a caller's callback must never stop the run
                logging.getLogger(__name__).exception("on_tick callback failed")


async def _pump(ticks: Any, merger: LiveMerger) -> None:
    while True:
        _drain(ticks, merger)
        await asyncio.sleep(PUMP_S)


def _drain(ticks: Any, merger: LiveMerger) -> None:
    while not ticks.empty():
        merger.add(*ticks.get())


async def _wait(procs: list[Any], stop: asyncio.Event | None, settings: LoadSettings) -> None:
    loop = asyncio.get_running_loop()
    joins = [loop.run_in_executor(None, p.join) for p in procs]
    everything = asyncio.gather(*joins)
    stop_wait = asyncio.ensure_future(stop.wait()) if stop is not None else None
    waiting: set[asyncio.Future[Any]] = {everything, *([stop_wait] if stop_wait else [])}
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if stop_wait is not None and stop_wait in done:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the child stops, drains and writes its files
        limit = settings.timeout_seconds + settings.drain_seconds + JOIN_GRACE_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(everything), limit)
        for p in procs:
            if p.is_alive():
                p.kill()
    if stop_wait is not None:
        stop_wait.cancel()
    await everything


def _merge(
    settings: LoadSettings,
    files: ResultFiles,
    dirs: list[Path],
    t0_s: float,
    merger: LiveMerger,
    extra: dict[str, Any],
) -> LoadSummary:
    tally = Tally(t0_s, settings.bucket_seconds)
    starts, ends, load_ends, stopped = [], [], [], "duration"
    for d in dirs:
        try:
            result = orjson.loads((d / TALLY_FILE).read_bytes())
        except FileNotFoundError as exc:
            files.close()
            raise HarnessError(f"load process for {d.name} ended without results (see its stderr)") from exc
        tally.merge(Tally.from_json(result["tally"]))
        starts.append(result["started_s"])
        ends.append(result["ended_s"])
        load_ends.append(result["load_ended_s"])
        stopped = result["stopped_by"] if result["stopped_by"] != "duration" else stopped
        _copy(d / records.CHAT_FILE, files.chat)
        _copy(d / records.EXPLANATION_FILE, files.explanations)
        _append_intervals(d / records.HISTOGRAM_LOG_FILE, files.hlog)
    files.close()
    started_s, ended_s = min(starts), max(ends)
    copy_chaos_events(settings.results_dir, started_s, ended_s)
    meta = {
        "run_id": settings.run_id,
        "stopped_by": stopped,
        "share": local_share(settings),
        "load_ended_s": max(load_ends),
        **extra,
    }
    summary = build_summary(tally, settings, started_s=started_s, ended_s=ended_s, meta=meta)
    summary["processes"] = len(dirs)
    write_summary(settings.results_dir, summary)
    for view in summary["buckets"]:  # any bucket no child sent live (one was killed, say)
        if view["start_s"] not in merger.shown:
            merger.tick(view)
    return LoadSummary(summary)


def _copy(src: Path, dst: IO[bytes]) -> None:
    with contextlib.suppress(FileNotFoundError), open(src, "rb") as fh:
        shutil.copyfileobj(fh, dst, 1 << 20)


def _append_intervals(src: Path, dst: IO[str]) -> None:
    """The child's interval lines, without its header (the results dir's log has one)."""
    with contextlib.suppress(FileNotFoundError), open(src, encoding="utf-8") as fh:
        dst.writelines(line for line in fh if line.startswith("Tag="))
