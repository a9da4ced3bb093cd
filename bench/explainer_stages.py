"""Per-stage cost of the explainer's ML pipeline, one job at a time, against a bare forward pass.

    python bench/explainer_stages.py                 # default featureset, CPU, ~1 minute
    python bench/explainer_stages.py --jobs 20 --threads 2 --device cuda
    python bench/explainer_stages.py --jobs 6 --embedding-nodes 0    # quick; no token -> feature edges

Prints median and p95 milliseconds per stage by granularity (extract of one job, decode,
gradient attribution, heuristic attribution, graph: with its token -> feature edges, one more
backward pass per feature given them, ``--embedding-nodes``) and the ratio of a whole job (extract + decode
+ attribution + graph) to the baseline: the subject model's plain forward over the same tokens.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from _bench import explainer_job

from hif.explainer.core.pipeline import load_pipeline
from hif.explainer.featureset import load_registry


def _timed(fn: Callable[[], Any], into: list[float]) -> Any:
    started = time.perf_counter()
    result = fn()
    into.append((time.perf_counter() - started) * 1000)
    return result


def _summary(ms: list[float]) -> str:
    p95 = sorted(ms)[max(0, round(0.95 * len(ms)) - 1)]
    return f"median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--embedding-nodes",
        type=int,
        default=None,
        help="features given token edges (default: the featureset's)",
    )
    args = parser.parse_args()
    pipeline = load_pipeline(load_registry().resolve(None), device=args.device, threads=args.threads)
    rng = random.Random(0)
    for granularity in ("sentence", "token"):
        plan = pipeline.default_plan(granularity)
        if args.embedding_nodes is not None:
            plan = dataclasses.replace(plan, embedding_nodes=args.embedding_nodes)
        stages: dict[str, list[float]] = {
            k: [] for k in ("forward", "extract", "decode", "attribution", "heuristic", "graph", "job")
        }
        for i in range(args.jobs + 2):
            job = explainer_job(rng, granularity, i, budget_s=1.5)
            ids = torch.tensor([pipeline.subject.encode(job.prompt, job.completion).input_ids])
            with torch.inference_mode():
                _timed(lambda ids=ids: pipeline.subject.model(input_ids=ids), stages["forward"])
            [ex] = _timed(lambda job=job, p=plan: pipeline.extract([job], [p]), stages["extract"])
            dec = _timed(lambda ex=ex, p=plan: pipeline.decode(ex, p), stages["decode"])
            att = _timed(lambda dec=dec, p=plan: pipeline.attribute(dec, p), stages["attribution"])
            _timed(lambda dec=dec, p=plan: pipeline.heuristic(dec, p), stages["heuristic"])
            _timed(lambda j=job, d=dec, a=att, p=plan: pipeline.graph(j, d, a, p), stages["graph"])
            stages["job"].append(sum(stages[k][-1] for k in ("extract", "decode", "attribution", "graph")))
            if i < 2:  # warm-up
                for ms in stages.values():
                    ms.pop()
        tokens = len(pipeline.subject.encode(job.prompt, job.completion).input_ids)
        print(
            f"{granularity} (~{tokens} tokens, {args.jobs} jobs, {torch.get_num_threads()} threads, "
            f"{args.device}, token edges into {plan.embedding_nodes} features):"
        )
        for name, ms in stages.items():
            print(f"  {name:<12} {_summary(ms)}")
        ratio = statistics.median(stages["job"]) / statistics.median(stages["forward"])
        print(f"  whole job / bare forward: {ratio:.1f}x")


if __name__ == "__main__":
    main()
