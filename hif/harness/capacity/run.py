"""The capacity search's library API: steps as load runs, judged, searched, saved.

>>> s = CapacitySettings(base_url="http://127.0.0.1:8080", slo=("chat_p95_ms=500",),  # doctest: +SKIP
...                      attach_rates="0,0.3", rate_min=5, rate_max=80, step_seconds=15)
>>> data = run_capacity_sync(s)                                                     # doctest: +SKIP
>>> [(f["attach_rate"], f["rate_rps"], f["first_broken"]) for f in data["frontier"]]  # doctest: +SKIP

Each step is a normal load run folder under ``results_dir/attach-A/step-NN-RATErps`` (with
``--prompt-tokens``, ``results_dir/attach-A/prompt-P/step-NN-RATErps``); the search
writes ``capacity.json`` (schema ``docs/schemas/capacity.schema.json``), then renders
``capacity.md`` and ``capacity.svg`` from that file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from hif.harness import records
from hif.harness.capacity import search as searching
from hif.harness.capacity.idle import wait_idle
from hif.harness.capacity.judge import Window, judge
from hif.harness.capacity.settings import CapacitySettings
from hif.harness.client import new_event_loop
from hif.harness.load.run import run_load
from hif.harness.load.summary import LoadSummary

CAPACITY_JSON_FILE = records.CAPACITY_JSON_FILE
CAPACITY_MD_FILE = "capacity.md"
EXIT_OK, EXIT_LOWEST_FAILED, EXIT_GENERATOR = 0, 1, 3
# A step stops early when its chat latency (intended view) sits above this multiple of the chat
# gate for this many buckets in a row, rising: the queue is running away and the verdict is known.
RUNAWAY_FACTOR = 3.0
RUNAWAY_BUCKETS = 3
MAX_EXTENSIONS = 2  # an inconclusive step (too few samples) is run again this many times at most

RunLoad = Callable[..., Awaitable[LoadSummary]]


class _Search:
    def __init__(self, settings: CapacitySettings, run: RunLoad) -> None:
        self.s = settings
        self.run = run
        self.steps: list[dict[str, Any]] = []

    async def step(
        self, rate: float, attach: float, prompt: int | None = None, repeat_of: int | None = None
    ) -> dict[str, Any]:
        s = self.s
        index = len(self.steps)
        folder = s.results_dir / f"attach-{attach:g}"
        if prompt is not None:
            folder /= f"prompt-{prompt}"
        folder /= f"step-{index:02d}-{rate:.1f}rps"
        # a seed per step: one Poisson draw repeated at every rate would bias every step alike
        load = s.step_settings(rate, attach, folder, prompt, seed=s.seed + index)
        idle = await wait_idle(load.metrics_urls(), s.idle_timeout_seconds)
        stop = asyncio.Event()
        summary = await self.run(load, stop=stop, on_tick=self._watch(stop))
        d = summary.data
        used = (d.get("featureset") or {}).get("used")
        if s.features is None and isinstance(used, str):
            # The first step chose the server's default (and said so once); later steps ask for it
            # by name rather than repeating the runner's note at every step.
            self.s = dataclasses.replace(s, features=used)
        window = Window(folder, float(d["started_at"]) + s.warmup_seconds, float(d["load_ended_at"]))
        windows = [window]
        if repeat_of is not None:
            windows = [*self.steps[repeat_of]["_windows"], window]
        gates = [g for g in s.gates if g.applies(attach, s.granularity)]
        verdict = judge(gates, windows, s.min_tail_samples)
        stopped = d["stopped_by"] == "stop"
        if stopped:  # ended early by the runaway watch: a fail whatever the shortened sample says
            verdict = {**verdict, "verdict": "fail", "saturated": True}
            verdict["first_broken"] = verdict["first_broken"] or "chat_p95_ms (saturation)"
        # The runner's own self-check already forgives a Poisson schedule's shortfall within its
        # noise (hif.harness.load.summary.short_of_rate), so its verdict is the step's.
        valid = bool(d["generator"]["valid"])
        row = {
            "index": index,
            "attach_rate": attach,
            "prompt_tokens": prompt,
            "rate_rps": round(rate, 3),
            "results_dir": str(folder),
            "verdict": verdict["verdict"] if valid else "invalid",
            "gates": verdict["gates"],
            "first_broken": verdict["first_broken"] if valid else None,
            "achieved_rps": float(d["generator"]["achieved_rps"]),
            "generator_valid": valid,
            "reasons": list(d["generator"]["reasons"])
            + (["stopped early: latency running away"] if stopped else []),
            "saturated": bool(verdict["saturated"]),
            "repeat_of": repeat_of,
            "idle_wait_s": idle["waited_s"],
            "_windows": windows,
        }
        self.steps.append(row)
        return row

    def _watch(self, stop: asyncio.Event) -> Callable[[dict[str, Any]], None]:
        chat = next((g.threshold for g in self.s.gates if g.name == "chat_p95_ms"), None)
        seen: list[float] = []
        t0: list[float] = []

        def on_tick(bucket: dict[str, Any]) -> None:
            if chat is None:
                return
            t0.append(t0[0] if t0 else float(bucket["start_s"]))
            if float(bucket["start_s"]) - t0[0] < self.s.warmup_seconds:
                return
            seen.append(float(bucket.get("intended_p95_ms") or 0.0))
            last = seen[-RUNAWAY_BUCKETS:]
            if (
                len(last) == RUNAWAY_BUCKETS
                and all(v > RUNAWAY_FACTOR * chat for v in last)
                and last == sorted(last)
            ):
                stop.set()

        return on_tick

    async def probe(self, rate: float, attach: float, prompt: int | None = None) -> str:
        """One verdict at ``rate``: a step, retried once when the generator was the limit, extended
        while too few samples back a gate, repeated once (and judged on all its parts) when a gate
        sits within the noise margin of its threshold."""
        row = await self._valid_step(rate, attach, prompt, None)
        parts = 1
        while row["verdict"] == "inconclusive" and self._extendable(row, parts):
            row = await self._valid_step(rate, attach, prompt, row["index"])
            parts += 1
        if row["verdict"] in ("pass", "fail") and not row["saturated"] and self._near(row):
            row = await self._valid_step(rate, attach, prompt, row["index"])
        return str(row["verdict"])

    async def _valid_step(
        self, rate: float, attach: float, prompt: int | None, repeat_of: int | None
    ) -> dict[str, Any]:
        """A step, run once more when the generator was the limit (the second verdict stands)."""
        row = await self.step(rate, attach, prompt, repeat_of)
        if row["verdict"] == "invalid":
            row = await self.step(rate, attach, prompt, repeat_of)
        return row

    def _extendable(self, row: dict[str, Any], parts: int) -> bool:
        """Whether MAX_EXTENSIONS more parts could bring every short gate its samples, at the rate
        samples came so far (a gate with none, or one still short after them, is not extended: the
        climb to a higher rate brings samples faster)."""
        for g in row["gates"]:
            if g["verdict"] != "inconclusive":
                continue
            per_part = g["samples"] / parts
            if not per_part or g["min_samples"] > per_part * (1 + MAX_EXTENSIONS):
                return False
        return parts <= MAX_EXTENSIONS

    def _near(self, row: dict[str, Any]) -> bool:
        return any(g["margin"] is not None and abs(g["margin"]) < self.s.noise_margin for g in row["gates"])


async def run_capacity(settings: CapacitySettings, *, run: RunLoad = run_load) -> dict[str, Any]:
    """Search every attach rate (at every prompt length); save capacity.json and render its views.
    Pre-flight and configuration errors are raised (HarnessError: exit 2) before any step is judged."""
    settings.require_gates()
    started = time.time()
    search = _Search(settings, run)
    frontier = []
    for attach, prompt in settings.plan():
        first = len(search.steps)
        loop = asyncio.get_running_loop()
        result = await _search_async(search, attach, prompt, settings, loop)
        mine = search.steps[first:]
        frontier.append(_frontier(attach, prompt, result, mine))
    data = _document(settings, started, search.steps, frontier)
    save_capacity(data, settings.results_dir)
    return data


async def _search_async(
    search: _Search, attach: float, prompt: int | None, s: CapacitySettings, loop: asyncio.AbstractEventLoop
) -> searching.Result:
    # search() is synchronous (pure, testable); it runs in a daemon thread and each probe is a
    # coroutine run on this loop, so the loop keeps serving the load runs while the search waits,
    # and a Ctrl-C that closes the loop never leaves a thread that blocks the process's exit.
    done: asyncio.Future[searching.Result] = loop.create_future()

    def probe(rate: float) -> str:
        return asyncio.run_coroutine_threadsafe(search.probe(rate, attach, prompt), loop).result()

    def work() -> None:
        try:
            result = searching.search(
                probe,
                rate_min=s.rate_min,
                rate_max=s.rate_max,
                growth=s.growth,
                resolution=s.resolution,
                max_steps=s.max_steps,
            )
        except BaseException as exc:  # handed to the awaiting coroutine, which re-raises it
            loop.call_soon_threadsafe(done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(done.set_result, result)

    threading.Thread(target=work, name=f"capacity-search-{attach:g}", daemon=True).start()
    return await done


def _frontier(
    attach: float, prompt: int | None, result: searching.Result, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    above = lowest_failing(steps)
    return {
        "attach_rate": attach,
        "prompt_tokens": prompt,
        "rate_rps": result.rate_rps,
        "interval_rps": list(result.interval_rps) if result.interval_rps else None,
        "first_broken": above["first_broken"] if above else None,
        "broke_at_rps": above["rate_rps"] if above else None,
        "lowest_rps": min((st["rate_rps"] for st in steps), default=None),
        "steps": result.steps,
        "reached_max": result.reached_max,
        "generator_short": result.generator_short,
    }


def _inconclusive_below(f: dict[str, Any]) -> bool:
    """The frontier's first failing step sat above lower steps (all inconclusive, since none passed)."""
    broke, lowest = f.get("broke_at_rps"), f.get("lowest_rps")
    return broke is not None and lowest is not None and broke > lowest


def lowest_failing(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The failing step at the lowest rate, counting only final verdicts: a part that a later
    extension or repeat was judged together with is superseded by it."""
    superseded = {st["repeat_of"] for st in steps if st["repeat_of"] is not None}
    failing = [
        st for st in steps if st["verdict"] == "fail" and st["first_broken"] and st["index"] not in superseded
    ]
    return min(failing, key=lambda st: st["rate_rps"], default=None)


def _document(
    s: CapacitySettings, started: float, steps: list[dict[str, Any]], frontier: list[dict[str, Any]]
) -> dict[str, Any]:
    if any(f["generator_short"] for f in frontier):
        status, code = "generator_short", EXIT_GENERATOR
    elif any(f["rate_rps"] is None and f["first_broken"] and not _inconclusive_below(f) for f in frontier):
        status, code = "lowest_step_failed", EXIT_LOWEST_FAILED
    elif any(f["rate_rps"] is None for f in frontier):
        # Every step inconclusive, or the first to break sat above steps with too few samples to
        # judge: no rate was proven to pass, but the lowest step did not break a gate either.
        status, code = "no_rate_passed", EXIT_LOWEST_FAILED
    else:
        status, code = "finished", EXIT_OK
    return {
        "schema": records.CAPACITY_SCHEMA,
        "started_at": started,
        "ended_at": time.time(),
        "settings": s.public(),
        "method": {
            "search": "bracketing (x growth from rate_min) then bisection, per attach rate "
            "(and prompt length)",
            "warmup_s": s.warmup_seconds,
            "step_s": s.step_seconds,
            "min_tail_samples": s.min_tail_samples,
            "noise_margin": s.noise_margin,
            "resolution": s.resolution,
            "arrival": s.arrival,
        },
        "steps": [{k: v for k, v in st.items() if not k.startswith("_")} for st in steps],
        "frontier": frontier,
        "status": status,
        "exit_code": code,
    }


def save_capacity(data: dict[str, Any], out_dir: Path) -> Path:
    """capacity.json (atomically), then capacity.md and capacity.svg rendered from the saved file."""
    from hif.harness.capacity.markdown import render_markdown, render_svg

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CAPACITY_JSON_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    saved = json.loads(path.read_text())
    (out_dir / "capacity.svg").write_text(render_svg(saved))
    (out_dir / CAPACITY_MD_FILE).write_text(render_markdown(saved))
    return path


def run_capacity_sync(settings: CapacitySettings) -> dict[str, Any]:
    """:func:`run_capacity` on a fresh (uvloop when available) event loop."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(run_capacity(settings))
    finally:
        loop.close()
