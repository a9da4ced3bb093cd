"""A deterministic stand-in pipeline for the distributed fault tests (``--pipeline-loader``).

The fault tests are about processes, queues and stores, not the model: this pipeline answers in
microseconds with a graph that depends only on the job, so two workers explaining the same job
write byte-identical graphs. Slowness, when a test needs jobs in flight, comes from the chaos
file's ``slow-sae`` flag, which the real worker applies before decode.

    hif explainer --pipeline-loader tests.integration._fake_pipeline:load_pipeline ...

``load_timed_pipeline`` is the same pipeline with a known cost per job: its decode takes
``HIF_FAKE_JOB_S`` seconds (default 0.5), so a test can size a load as a share of one worker's
capacity without the model's variable speed on a shared machine.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from typing import Any

from hif.explainer.featureset import FeaturesetInfo
from hif.explainer.plan import GRADIENT, HEURISTIC, Plan
from hif.store.base import Job


class FakePipeline:
    def __init__(self, info: FeaturesetInfo) -> None:
        self.featureset = info

    def default_plan(self, granularity: str) -> Plan:
        return Plan(granularity=granularity, top_k=8, layers=tuple(self.featureset.layers) or (0,))

    def extract(self, jobs: Sequence[Job], plans: Sequence[Plan]) -> list[Any]:
        return [f"{job.prompt}\n{job.completion}" for job in jobs]

    def decode(self, extraction: Any, plan: Plan) -> Any:
        digest = hashlib.sha256(str(extraction).encode()).digest()
        return sorted(set(digest))[: plan.top_k]

    def attribute(self, decoding: Any, plan: Plan) -> Any:
        return {"method": GRADIENT, "features": decoding}

    def attribute_batch(self, decodings: Sequence[Any], plans: Sequence[Plan]) -> list[Any]:
        return [self.attribute(d, p) for d, p in zip(decodings, plans, strict=True)]

    def heuristic(self, decoding: Any, plan: Plan) -> Any:
        return {"method": HEURISTIC, "features": decoding}

    def graph(self, job: Job, decoding: Any, attribution: Any, plan: Plan) -> dict[str, Any]:
        return {
            "metadata": {
                "trace_id": job.trace_id,
                "granularity": plan.granularity,
                "featureset": self.featureset.name,
            },
            "nodes": [{"id": f"f{f}", "feature": f} for f in attribution["features"]],
            "links": [],
        }


class TimedPipeline(FakePipeline):
    def __init__(self, info: FeaturesetInfo, job_s: float) -> None:
        super().__init__(info)
        self.job_s = job_s

    def decode(self, extraction: Any, plan: Plan) -> Any:
        time.sleep(self.job_s)  # the stand-in's model time: fixed, so capacity is 1 / job_s
        return super().decode(extraction, plan)


def load_pipeline(info: FeaturesetInfo, *, device: str = "cpu") -> FakePipeline:
    return FakePipeline(info)


def load_timed_pipeline(info: FeaturesetInfo, *, device: str = "cpu") -> FakePipeline:
    return TimedPipeline(info, float(os.environ.get("HIF_FAKE_JOB_S", "0.5")))
