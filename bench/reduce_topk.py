"""What the ``reduce-topk`` rung saves: decode + attribution + graph at the featureset's k and at the
halved k the ladder uses, interleaved job by job in one run (the same texts, the same process).

    python bench/reduce_topk.py                  # default featureset, token graphs, CPU
    python bench/reduce_topk.py --granularity sentence --jobs 30 --threads 2

Prints the median ms of each and their ratio, and checks both graphs stay complete: the SAE codes
plus the error term rebuild the activation (the dropped latents sit in the error node).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from _bench import explainer_job

from hif.explainer.core.pipeline import load_pipeline
from hif.explainer.featureset import load_registry
from hif.explainer.plan import REDUCE_TOPK, Plan
from hif.store.base import Job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--featureset", default=None)
    parser.add_argument("--granularity", default="token", choices=("sentence", "token"))
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    pipeline = load_pipeline(load_registry().resolve(args.featureset), device="cpu", threads=args.threads)
    full = pipeline.default_plan(args.granularity)
    reduced = full.degrade(REDUCE_TOPK, top_k=max(1, full.top_k // 2))
    rng = random.Random(0)
    times: dict[int, list[float]] = {full.top_k: [], reduced.top_k: []}
    for i in range(args.jobs + 2):
        job = explainer_job(rng, args.granularity, i, budget_s=5.0)
        for plan in (full, reduced) if i % 2 else (reduced, full):
            ms = _one(pipeline, job, plan)
            if i >= 2:  # the first two jobs warm the caches
                times[plan.top_k].append(ms)
    a, b = statistics.median(times[full.top_k]), statistics.median(times[reduced.top_k])
    print(f"{args.granularity} graphs, {args.jobs} jobs, {args.threads} threads")
    print(f"k={full.top_k:<3} decode+attribution+graph median {a:7.1f} ms")
    print(f"k={reduced.top_k:<3} decode+attribution+graph median {b:7.1f} ms   ratio {b / a:.2f}")


def _one(pipeline, job: Job, plan: Plan) -> float:  # type: ignore[no-untyped-def]
    [extraction] = pipeline.extract([job], [plan])
    started = time.perf_counter()
    decoding = pipeline.decode(extraction, plan)
    attribution = pipeline.attribute(decoding, plan)
    pipeline.graph(job, decoding, attribution, plan)
    elapsed = (time.perf_counter() - started) * 1000
    for layer, codes in decoding.codes.items():
        sae = pipeline.saes[layer]
        rebuilt = sae.decode_sparse(codes.values, codes.indices) + codes.error
        assert codes.values.shape[1] == plan.top_k
        assert torch.allclose(rebuilt, extraction.hidden[layer], atol=1e-4), "graph not complete"
    return elapsed


if __name__ == "__main__":
    main()
