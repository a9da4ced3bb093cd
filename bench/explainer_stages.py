"""Per-stage cost of the explainer's ML pipeline, one job at a time, against a bare forward pass;
then the ways of computing a batch's gradients, side by side.

    python bench/explainer_stages.py                 # default featureset, CPU, ~2 minutes
    python bench/explainer_stages.py --jobs 20 --threads 2 --device cuda
    python bench/explainer_stages.py --jobs 6 --embedding-nodes 0    # quick; no token -> feature edges

Prints median and p95 milliseconds per stage by granularity (extract of one job, decode,
gradient attribution, heuristic attribution, graph: with its token -> feature edges, one more
backward pass per feature given them, ``--embedding-nodes``) and the ratio of a whole job (extract + decode
+ attribution + graph) to the baseline: the subject model's plain forward over the same tokens.

Then, for batches of ``--batch`` jobs of the 80/20 sentence/token mix, the CPU milliseconds per job
of the gradients alone (no node scores, no graph), median of ``--rounds`` interleaved rounds:

- ``alone``: one job at a time, a forward with the SAE spliced in and one backward per target;
- ``autograd``: the batch in one padded forward from the hook layer, one backward per target index;
- ``autograd, vmapped``: the same with one vmapped backward for all target indices
  (``torch.autograd.grad(..., is_grads_batched=True)``);
- ``written-out``: the default path where it applies (a BERT encoder's last block above the hook
  layer, see ``hif/explainer/core/lastblock.py``): rows packed, each target's backward only on the
  rows it reads.
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

from hif.explainer.core import attribution
from hif.explainer.core.pipeline import SAEPipeline, load_pipeline
from hif.explainer.featureset import load_registry


def _timed(fn: Callable[[], Any], into: list[float]) -> Any:
    started = time.perf_counter()
    result = fn()
    into.append((time.perf_counter() - started) * 1000)
    return result


def _summary(ms: list[float]) -> str:
    p95 = sorted(ms)[max(0, round(0.95 * len(ms)) - 1)]
    return f"median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms"


def _vmapped_rows(pipeline: SAEPipeline, layer: int, jobs: list[attribution._Job]) -> None:
    """``attribution.gradient_rows``' autograd path with one vmapped backward for all target indices."""
    subject, sae = pipeline.subject, pipeline.saes[layer]
    lengths = [len(job.decoding.tokens) for job in jobs]
    width = max(lengths)
    pad = attribution._padded
    values = pad([job.decoding.codes[layer].values for job in jobs], width)
    indices = pad([job.decoding.codes[layer].indices for job in jobs], width)
    x = pad([job.decoding.extraction.hidden[layer] for job in jobs], width)
    ids = pad([torch.tensor(job.decoding.tokens) for job in jobs], width)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    n_t = max(len(job.targets) for job in jobs)
    with torch.enable_grad():
        leaf = values.clone().requires_grad_(True)
        flat = torch.nn.functional.embedding_bag(
            indices.flatten(0, 1), sae.W_dec, per_sample_weights=leaf.flatten(0, 1), mode="sum"
        )
        x_hat = flat.view(x.shape) + sae.b_dec
        error = (x - x_hat).detach().requires_grad_(True)
        out = subject.run_from(layer, x_hat + error, ids.masked_fill(mask == 0, subject.pad_id), mask)
        per_job = [
            attribution.target_values(out[b, :n], job.targets, job.decoding, subject.kind)
            for b, (job, n) in enumerate(zip(jobs, lengths, strict=True))
        ]
        summed = torch.stack(
            [sum((v[j] for v in per_job if j < len(v)), out.new_zeros(())) for j in range(n_t)]
        )
        torch.autograd.grad(summed, [leaf, error], torch.eye(n_t), is_grads_batched=True)


def batched_gradients(
    pipeline: SAEPipeline, batch: int, rounds: int, rng: random.Random, sentences: int
) -> None:
    """CPU ms per job of a batch's gradients, each way, interleaved rounds (see the module docstring)."""
    layer = pipeline.featureset.layers[-1]
    jobs = [
        explainer_job(
            rng, "token" if rng.random() < 0.2 else "sentence", i, budget_s=1.5, sentences=sentences
        )
        for i in range(batch)
    ]
    plans = [pipeline.default_plan(job.granularity) for job in jobs]
    decodings = [pipeline.decode(e, p) for e, p in zip(pipeline.extract(jobs, plans), plans, strict=True)]

    def fresh() -> list[attribution._Job]:
        return [
            attribution._Job(d, p, attribution.target_specs(d, pipeline.subject.kind))
            for d, p in zip(decodings, plans, strict=True)
        ]

    ways: dict[str, Callable[[list[attribution._Job]], Any]] = {
        "alone": lambda js: [
            attribution.gradient_layer(pipeline.subject, pipeline.saes[layer], j.decoding, layer, j.targets)
            for j in js
        ],
        "autograd": lambda js: attribution.gradient_rows(
            pipeline.subject, pipeline.saes[layer], layer, js, written_out=False
        ),
        "autograd, vmapped": lambda js: _vmapped_rows(pipeline, layer, js),
        "written-out": lambda js: attribution.gradient_rows(
            pipeline.subject, pipeline.saes[layer], layer, js
        ),
    }
    if attribution._written_out(pipeline.subject, layer) is None:
        del ways["written-out"]  # not a BERT encoder's last block: the default is autograd
    cpu_ms: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(rounds + 1):
        for name, way in ways.items():
            js = fresh()
            started = time.process_time()
            way(js)
            if r:  # round 0 warms up
                cpu_ms[name].append((time.process_time() - started) * 1000 / batch)
    tokens = statistics.mean(len(d.tokens) for d in decodings)
    targets = statistics.mean(len(j.targets) for j in fresh())
    print(
        f"gradients of a batch of {batch} (~{tokens:.0f} tokens, ~{targets:.1f} targets a job, "
        f"layer {layer}):"
    )
    base = statistics.median(cpu_ms["alone"])
    for name, ms in cpu_ms.items():
        cost = statistics.median(ms)
        print(f"  {name:<18} {cost:7.2f} ms/job (CPU)  {base / cost:5.2f}x alone")


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
    parser.add_argument("--batch", type=int, default=8, help="jobs a batch, as the worker's lease")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the batched gradients")
    parser.add_argument(
        "--sentences", type=int, default=3, help="completion sentences (targets) of the batched jobs"
    )
    parser.add_argument("--batched-only", action="store_true", help="skip the per-stage table")
    args = parser.parse_args()
    pipeline = load_pipeline(load_registry().resolve(None), device=args.device, threads=args.threads)
    rng = random.Random(0)
    for granularity in () if args.batched_only else ("sentence", "token"):
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
    batched_gradients(pipeline, args.batch, args.rounds, rng, args.sentences)


if __name__ == "__main__":
    main()
