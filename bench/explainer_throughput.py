"""Explainer throughput at fixed offered rates, against the ceiling of its stages measured alone.

    python bench/explainer_throughput.py                      # ~5 minutes on 2 cores
    python bench/explainer_throughput.py --rates 0.5,0.8,1.0 --duration-s 20 --device cuda
    python bench/explainer_throughput.py --rates 1.0,1.5,2.0  # offered beyond today's ceiling

Both attribution modes run side by side in one process (``--attribution-batching off,on``):
``off`` is the code path as it was before attribution was batched (the worker's
``attribution_batching=off``, ``Plan.batched`` False): extraction over lightly padded sub-batches,
the SAE encoded job by job (decoder rows gathered to rebuild the error), one job's gradient
attribution at a time (a full forward and one backward per target). ``on`` is today's path: the
blocks below the hook layer run written out over the batch's texts packed without padding, the SAE
encodes the batch in one product, and attribution shares passes across the batch's jobs: one
forward from the hook layer and one backward per target index, or, through a BERT encoder's
written-out last block (the shipped featuresets), one packed forward and one backward for all
targets that touches only the rows each target reads. The graphs are the same either way (tests
compare them); only the cost differs.
Ceiling and saturation rounds interleave the modes, and each offered rate runs each mode in turn,
at the same absolute rate (a fraction of the first mode's ceiling). Ratios are medians of per-round
paired ratios, which a shared machine's load swings move least.

1. Ceiling: the real pipeline runs each stage alone over a fixed job set (extract, and batched
   attribution, amortised over worker-sized batches), giving the cost per job of extract, decode,
   attribution and persist by granularity; the median of the interleaved rounds. The ceiling is
   1 / (mean cost per job) for the 80/20 sentence/token mix.
2. Saturation: a real worker drains a queue pre-filled with the mix (no supervisor, so no
   backpressure rung shrinks the work): explanations/s at capacity, per wall second and per CPU
   second of the process (explanations/s per core, the figure least moved by other tenants), with
   the queue, trace store and persist included.
3. Offered load: a real :class:`~hif.explainer.service.worker.Worker` (SQLite queue, local blobs, chaos
   off) with the supervisor's sweeper and backpressure controller in a thread, and a producer
   enqueuing the mix at fixed fractions of the ceiling; jobs are shed at admission while the level
   is HARD, as the gateway does. Reported per rate: explanations/s, p95 latency (enqueue to
   complete) by granularity, states, ladder rungs applied and the mean stage breakdown.

Goals (2 cores): admitted jobs within budget (sentence p95 < 1.5 s, token p95 < 3.5 s); at an
offered rate equal to the ceiling, throughput >= 80% of it; batched attribution >= 2x the
explanations/s per core of one-at-a-time.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from hif.config import build
from hif.explainer.featureset import load_registry
from hif.explainer.plan import Pipeline
from hif.explainer.service.backpressure import BackpressureController, Thresholds
from hif.explainer.service.events import DirectSink
from hif.explainer.service.process import PipelineCache, configure_torch
from hif.explainer.service.worker import Worker
from hif.explainer.settings import DEFAULT_PIPELINE_LOADER, ExplainerSettings, FeaturesetSettings, SlaSettings
from hif.metrics import ExplainerMetrics
from hif.store.base import BackpressureLevel, Job, TraceRecord, TraceState, graph_key
from hif.store.local import LocalBlobStore
from hif.store.sqlite import SqliteJobQueue, SqliteTraceStore

STAGES = ("extract", "decode", "attribution", "persist")
PROSE = (
    "the model reads each token and the sparse autoencoder finds features that explain what "
    "the gateway answered while the sidecar keeps latency low under load with budgets and "
    "backpressure because every request matters and chaos tests prove the system degrades "
    "gracefully"
)
WORDS = tuple(PROSE.split())


def make_job(rng: random.Random, granularity: str, sla: SlaSettings, featureset: str) -> Job:
    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14))).capitalize() + "."

    now = time.time()
    return Job(
        trace_id=uuid.uuid4().hex,
        tenant="bench",
        granularity=granularity,
        featureset=featureset,
        prompt=sentence(),
        completion=" ".join(sentence() for _ in range(3)),
        created_at=now,
        expires_at=now + sla.trace_ttl_s,
        budget_s=sla.budget_s(granularity),
    )


def mix(rng: random.Random) -> str:
    return "token" if rng.random() < 0.2 else "sentence"


# --- 1. the ceiling -------------------------------------------------------------------------------


def stage_costs(
    pipeline: Pipeline,
    blobs: LocalBlobStore,
    granularity: str,
    n: int,
    batch: int,
    rng: random.Random,
    sla: SlaSettings,
    batching: str,
) -> dict[str, float]:
    """Seconds per job of each stage run alone: the median over ``n`` jobs (robust to the other
    tenants of a shared machine), extract (and, with ``batching`` on, attribution) amortised over
    worker-sized batches, as the worker runs them."""
    jobs = [make_job(rng, granularity, sla, pipeline.featureset.name) for _ in range(n)]
    plan = dataclasses.replace(pipeline.default_plan(granularity), batched=batching == "on")
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for start in range(0, n, batch):
        chunk = jobs[start : start + batch]
        t0 = time.perf_counter()
        extractions = pipeline.extract(chunk, [plan] * len(chunk))
        samples["extract"] += [(time.perf_counter() - t0) / len(chunk)] * len(chunk)
        decoded = []
        for extraction in extractions:
            t0 = time.perf_counter()
            decoded.append(pipeline.decode(extraction, plan))
            samples["decode"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        if plan.attribution != "gradient":
            attributed = [pipeline.heuristic(d, plan) for d in decoded]
        elif batching == "on":
            attributed = pipeline.attribute_batch(decoded, [plan] * len(decoded))
        else:
            attributed = [pipeline.attribute(d, plan) for d in decoded]
        samples["attribution"] += [(time.perf_counter() - t0) / len(chunk)] * len(chunk)
        for job, d, a in zip(chunk, decoded, attributed, strict=True):
            t0 = time.perf_counter()
            blobs.put(graph_key(job.trace_id), json.dumps(pipeline.graph(job, d, a, plan)).encode())
            samples["persist"].append(time.perf_counter() - t0)
    return {stage: statistics.median(values) for stage, values in samples.items()}


def ceiling_of(costs: dict[str, dict[str, float]]) -> float:
    """Explanations/s one worker sustains on the 80/20 mix when every stage costs what it does alone."""
    per_job = {g: sum(c.values()) for g, c in costs.items()}
    return 1.0 / (0.8 * per_job["sentence"] + 0.2 * per_job["token"])


def measure_ceiling(
    pipeline: Pipeline, n: int, batch: int, rng: random.Random, sla: SlaSettings, batching: str
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hif-ceiling-") as tmp:
        blobs = LocalBlobStore(Path(tmp))
        costs = {
            g: stage_costs(pipeline, blobs, g, n, batch, rng, sla, batching) for g in ("sentence", "token")
        }
    return {"costs": costs, "ceiling_per_s": ceiling_of(costs)}


# --- 2. offered load ------------------------------------------------------------------------------


def supervise(
    stop: threading.Event,
    queue: SqliteJobQueue,
    state: SqliteTraceStore,
    controller: BackpressureController,
    levels: list[int],
) -> None:
    """The supervisor's tick, in a thread: sweep expiries, publish the backpressure level."""
    while not stop.wait(0.1):
        state.expire_due()
        signal = controller.evaluate(queue.oldest_age_s(), queue.depth())
        state.publish_backpressure(signal)
        levels.append(int(signal.level))


def submit(queue: SqliteJobQueue, state: SqliteTraceStore, jobs: list[Job]) -> None:
    state.create(
        [
            TraceRecord(
                trace_id=job.trace_id,
                tenant="bench",
                state=TraceState.QUEUED,
                granularity_requested=job.granularity,
                granularity=job.granularity,
                features_requested=job.featureset,
                features_resolved=job.featureset,
                created_at=job.created_at,
                updated_at=job.created_at,
                expires_at=job.expires_at,
            )
            for job in jobs
        ]
    )
    queue.enqueue(jobs)


def _worker(
    tmp: str, pipelines: PipelineCache, settings: ExplainerSettings, sla: SlaSettings
) -> tuple[Worker, SqliteJobQueue, SqliteTraceStore]:
    db = Path(tmp) / "hif.db"
    queue, state, blobs = SqliteJobQueue(db), SqliteTraceStore(db), LocalBlobStore(Path(tmp) / "blobs")
    worker = Worker(
        queue=queue,
        state=state,
        blobs=blobs,
        pipelines=pipelines,
        settings=settings,
        sla=sla,
        sink=DirectSink(ExplainerMetrics(CollectorRegistry())),
        consumer="bench",
    )
    return worker, queue, state


def saturation(
    pipelines: PipelineCache,
    featureset: str,
    n: int,
    settings: ExplainerSettings,
    sla: SlaSettings,
    seed: int,
) -> tuple[float, float]:
    """(explanations per wall second, per CPU second) of one real worker draining a queue pre-filled
    with ``n`` jobs of the mix: its capacity, queue, trace store and persist included. No supervisor
    runs, so no backpressure rung makes the work smaller than the full plan. Per CPU second is
    explanations/s per core, and what other tenants of a shared machine move least (they take wall
    time from this process, not CPU time)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="hif-saturation-") as tmp:
        worker, queue, state = _worker(tmp, pipelines, settings, sla)
        jobs = [make_job(rng, mix(rng), sla, featureset) for _ in range(n)]
        submit(queue, state, jobs)
        started, cpu_started = time.perf_counter(), time.process_time()
        while worker.run_once() and time.perf_counter() - started < 300:
            pass
        elapsed_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        done = sum(1 for j in jobs if (r := state.get(j.trace_id)) and r.state is TraceState.COMPLETE)
        queue.close()
        state.close()
    return done / elapsed_s, done / cpu_s


def run_rate(
    pipelines: PipelineCache,
    featureset: str,
    rate: float,
    duration_s: float,
    settings: ExplainerSettings,
    sla: SlaSettings,
    seed: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="hif-bench-") as tmp:
        worker, queue, state = _worker(tmp, pipelines, settings, sla)
        stop, levels = threading.Event(), []  # type: ignore[var-annotated]
        controller = BackpressureController(Thresholds.from_settings(settings, sla))
        threads = [
            threading.Thread(target=worker.run, args=(stop,), kwargs={"block_s": 0.02}),
            threading.Thread(target=supervise, args=(stop, queue, state, controller, levels)),
        ]
        for t in threads:
            t.start()
        shed, ids = 0, []
        started = time.perf_counter()
        for i in range(int(rate * duration_s)):
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))  # the offered schedule
            signal = state.read_backpressure()
            if signal is not None and signal.level == BackpressureLevel.HARD:
                shed += 1  # the gateway's admission rule at HARD
                continue
            job = make_job(rng, mix(rng), sla, featureset)
            submit(queue, state, [job])
            ids.append(job.trace_id)
        offered_s = time.perf_counter() - started
        drain_deadline = time.monotonic() + 60
        while queue.depth() and time.monotonic() < drain_deadline:
            time.sleep(0.05)
        elapsed_s = time.perf_counter() - started
        stop.set()
        for t in threads:
            t.join(timeout=30)
        records = [r for r in (state.get(i) for i in ids) if r is not None]
        queue.close()
        state.close()
    return summarize(records, rate, offered_s, elapsed_s, shed, levels)


def p95(values: list[float]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def summarize(
    records: list[TraceRecord], rate: float, offered_s: float, elapsed_s: float, shed: int, levels: list[int]
) -> dict[str, Any]:
    complete = [r for r in records if r.state is TraceState.COMPLETE]
    latency: dict[str, list[float]] = collections.defaultdict(list)
    for r in complete:
        latency[r.granularity_requested].append(r.updated_at - r.created_at)
    stages = {
        s: statistics.fmean([r.stage_ms.get(s, 0.0) for r in complete]) if complete else 0.0 for s in STAGES
    }
    rungs = collections.Counter(rung for r in records for rung in r.degraded)
    span_s = (max(r.updated_at for r in complete) - min(r.created_at for r in records)) if complete else 0.0
    return {
        "offered_per_s": rate,
        "admitted": len(records),
        "shed": shed,
        "states": dict(collections.Counter(str(r.state) for r in records)),
        # Completions over the span they happened in (first enqueue to last completion).
        "explanations_per_s": len(complete) / span_s if span_s > 0 else 0.0,
        "p95_s": {g: p95(v) for g, v in sorted(latency.items())},
        "stage_ms_mean": {s: round(v, 2) for s, v in stages.items()},
        "degraded": dict(rungs),
        "max_level": max(levels, default=0),
        "offered_s": round(offered_s, 2),
        "elapsed_s": round(elapsed_s, 2),
    }


# --- main -----------------------------------------------------------------------------------------


def _median_costs(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {
        g: {st: statistics.median(r["costs"][g][st] for r in rounds) for st in STAGES}
        for g in ("sentence", "token")
    }


def _print_costs(mode: str, costs: dict[str, dict[str, float]]) -> None:
    for g, c in costs.items():
        parts = " ".join(f"{s}={v * 1000:.1f}ms" for s, v in c.items())
        print(f"  batching={mode:3s} {g:8s}: {parts}  total={sum(c.values()) * 1000:.1f}ms/job")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--rates", default="0.5,0.8,1.0", help="offered rates as fractions of the (first mode's) ceiling"
    )
    p.add_argument("--duration-s", type=float, default=15.0, help="offered-load seconds per rate")
    p.add_argument("--ceiling-jobs", type=int, default=16, help="jobs per granularity for the ceiling")
    p.add_argument("--ceiling-rounds", type=int, default=3, help="interleaved ceiling rounds per mode")
    p.add_argument(
        "--min-jobs", type=int, default=30, help="run each rate long enough to offer this many jobs"
    )
    p.add_argument(
        "--attribution-batching",
        default="off,on",
        help="modes compared side by side, interleaved (off: one job's attribution at a time)",
    )
    p.add_argument("--saturation-jobs", type=int, default=48, help="jobs queued for a saturation round")
    p.add_argument("--saturation-rounds", type=int, default=3, help="interleaved saturation rounds per mode")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--torch-threads", type=int, default=0, help="0: all cores (one worker)")
    p.add_argument("--pipeline-loader", default=DEFAULT_PIPELINE_LOADER)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    modes = args.attribution_batching.split(",")
    settings = {
        mode: ExplainerSettings(
            device=args.device,
            torch_threads=args.torch_threads,
            workers=1,
            pipeline_loader=args.pipeline_loader,
            lease_max_jobs=8,
            attribution_batching=mode,
        )
        for mode in modes
    }
    sla = SlaSettings()
    configure_torch(settings[modes[0]])
    registry = load_registry(build(FeaturesetSettings).featuresets)  # honours HIF_FEATURESETS
    pipelines = PipelineCache(registry, args.device, args.pipeline_loader)
    pipeline = pipelines(registry.default)
    rng = random.Random(args.seed)
    batch = settings[modes[0]].lease_max_jobs
    for mode in modes:
        measure_ceiling(pipeline, 4, batch, rng, sla, mode)  # warm-up
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(args.ceiling_rounds):  # interleaved: machine noise hits both modes alike
        for mode in modes:
            rounds[mode].append(measure_ceiling(pipeline, args.ceiling_jobs, batch, rng, sla, mode))
    costs = {mode: _median_costs(rounds[mode]) for mode in modes}
    ceilings = {mode: ceiling_of(costs[mode]) for mode in modes}
    print(f"device={args.device} featureset={pipeline.featureset.name} threads={torch_threads()}")
    print(f"stage cost alone (median of {args.ceiling_rounds} interleaved rounds):")
    for mode in modes:
        _print_costs(mode, costs[mode])
    base = ceilings[modes[0]]
    ceiling_paired = {
        m: statistics.median(
            r["ceiling_per_s"] / b["ceiling_per_s"] for r, b in zip(rounds[m], rounds[modes[0]], strict=True)
        )
        for m in modes
    }
    print(
        "ceiling (80/20 mix, one worker): "
        + " ".join(f"batching={m} {c:.2f}/s" for m, c in ceilings.items())
        + "; median paired ratio "
        + " ".join(f"{m}={r:.2f}x" for m, r in ceiling_paired.items())
    )
    sat: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for r in range(args.saturation_rounds):  # interleaved, as the ceiling rounds
        for mode in modes:
            sat[mode].append(
                saturation(pipelines, pipeline.featureset.name, args.saturation_jobs, settings[mode], sla, r)
            )
    saturated: dict[str, Any] = {}
    for i, unit in enumerate(("per_wall_s", "per_cpu_s")):
        rates = {m: [v[i] for v in sat[m]] for m in modes}
        # Each round's modes ran back to back, under the same machine load: the median of the paired
        # ratios is the comparison least moved by other tenants of a shared machine.
        paired = {
            m: statistics.median(a / b for a, b in zip(rates[m], rates[modes[0]], strict=True)) for m in modes
        }
        saturated[unit] = {m: statistics.median(v) for m, v in rates.items()}
        saturated[f"{unit}_paired_ratio"] = paired
        saturated[f"{unit}_rounds"] = rates
        print(
            f"saturated worker, explanations {unit} ({args.saturation_jobs} queued jobs, median of "
            f"{args.saturation_rounds}): "
            + " ".join(f"batching={m} {v:.2f}" for m, v in saturated[unit].items())
            + "; median paired ratio "
            + " ".join(f"{m}={r:.2f}x" for m, r in paired.items())
            + "; rounds "
            + " ".join(f"{m}=[{', '.join(f'{v:.2f}' for v in rates[m])}]" for m in modes)
        )
    runs: list[dict[str, Any]] = []
    for fraction in (float(x) for x in args.rates.split(",")):
        rate = base * fraction  # the same offered rate for every mode
        duration_s = max(args.duration_s, args.min_jobs / rate)  # enough jobs for a p95
        for mode in modes:
            result = run_rate(
                pipelines, pipeline.featureset.name, rate, duration_s, settings[mode], sla, args.seed
            )
            result.update(attribution_batching=mode, fraction_of_ceiling=fraction)
            result["throughput_vs_base_ceiling"] = result["explanations_per_s"] / base
            runs.append(result)
            p95s = " ".join(f"{g}={v:.3f}s" for g, v in result["p95_s"].items() if v is not None)
            print(
                f"offered {fraction:.0%} of batching={modes[0]}'s ceiling ({rate:.2f}/s), batching={mode}: "
                f"{result['explanations_per_s']:.2f}/s p95 {p95s} states {result['states']} "
                f"shed {result['shed']} max_level {result['max_level']} stages {result['stage_ms_mean']} "
                f"degraded {result['degraded']}"
            )
    summary = {
        "saturated": saturated,
        "ceiling_per_s": ceilings,
        "ceiling_paired_ratio": ceiling_paired,
        "stage_cost_s": costs,
    }
    print(json.dumps({**summary, "runs": runs}, default=str))
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
