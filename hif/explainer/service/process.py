"""One explainer worker process: signals, torch threads, stores, pipelines, then the Worker loop."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from hif.chaos import ChaosReader
from hif.errors import ConfigError, HifError
from hif.explainer.featureset import Registry, load_registry
from hif.explainer.plan import Pipeline
from hif.explainer.service.events import READY, QueueSink
from hif.explainer.service.worker import Worker
from hif.explainer.settings import DEFAULT_PIPELINE_LOADER, ExplainerSettings, FeaturesetSettings, SlaSettings
from hif.store import open_stores
from hif.store.base import Job
from hif.store.settings import StoreSettings

log = logging.getLogger(__name__)


def _import(path: str) -> Callable[..., Pipeline]:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise ConfigError("pipeline_loader", f"cannot import {path!r}: {exc}") from exc


class PipelineCache:
    """Featureset name -> loaded pipeline, loaded once per process (the model is the expensive part)."""

    def __init__(self, registry: Registry, device: str, loader: str = DEFAULT_PIPELINE_LOADER) -> None:
        self.registry = registry
        self.device = device
        self.loader = loader
        self._loaded: dict[str, Pipeline] = {}

    def __call__(self, name: str) -> Pipeline:
        info = self.registry.resolve(name)  # FeaturesetError (a HifError) fails just this job
        pipeline = self._loaded.get(info.name)
        if pipeline is None:
            pipeline = _import(self.loader)(info, device=self.device)  # torch: only in worker processes
            self._loaded[info.name] = pipeline
        return pipeline


def warm_up(pipeline: Pipeline) -> None:
    """Run one small job through every stage (not persisted), so lazy initialisation (kernels,
    autograd, allocator) is paid before the worker says it is ready, not by the first real job."""
    now = time.time()
    job = Job(
        trace_id="warm-up",
        tenant="-",
        granularity="token",
        featureset=pipeline.featureset.name,
        prompt="Why is the sky blue?",
        completion="Sunlight scatters. Blue scatters most.",
        created_at=now,
        expires_at=now + 60,
        budget_s=60,
    )
    try:
        for granularity in ("sentence", "token"):
            plan = pipeline.default_plan(granularity)
            decoded = pipeline.decode(pipeline.extract([job], [plan])[0], plan)
            pipeline.graph(job, decoded, pipeline.attribute(decoded, plan), plan)
    except Exception as exc:  # a warm-up problem shows again, per job, on the first real one
        log.warning("pipeline warm-up failed: %s", exc)


def torch_threads(settings: ExplainerSettings) -> int:
    """Intra-op threads per worker: the flag, else the cores left after one for the gateway, split
    between workers. Oversubscribing hurts badly: on a busy 2-core machine a backward pass with two
    threads measured 1-2 s against ~0.1 s with one (spin-waiting thread teams)."""
    return settings.torch_threads or max(1, ((os.cpu_count() or 1) - 1) // settings.workers)


def configure_torch(settings: ExplainerSettings) -> None:
    threads = torch_threads(settings)
    # The pipeline loader reads HIF_TORCH_THREADS (the same name as the flag's env var).
    os.environ["HIF_TORCH_THREADS"] = str(threads)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def consumer_name(index: int, pid: int) -> str:
    """A worker's name on the queue: host:pid:index (the supervisor names its dead children by it)."""
    return f"{socket.gethostname()}:{pid}:{index}"


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_stop_signal(*_: object) -> None:
        # A second signal (the supervisor's SIGTERM after a group-wide one) would re-enter
        # Event.set() while the first still holds its lock and deadlock the worker: ignore it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop_signal)
    return stop


def _warm_pipelines(settings: ExplainerSettings, featuresets: FeaturesetSettings) -> PipelineCache:
    """The pipeline cache, with the default featureset loaded and warmed (readiness waits for it)."""
    registry = load_registry(featuresets.featuresets)
    pipelines = PipelineCache(registry, settings.device, settings.pipeline_loader)
    try:
        warm_up(pipelines(registry.default))
    except HifError as exc:
        log.warning("default featureset %s not loaded: %s", registry.default, exc)
    return pipelines


def run_worker_process(
    index: int,
    settings: ExplainerSettings,
    sla: SlaSettings,
    store_settings: StoreSettings,
    featureset_settings: FeaturesetSettings,
    events: Any,
) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format=f"%(asctime)s worker{index} %(levelname)s %(message)s"
    )
    stop = _stop_on_signals()
    configure_torch(settings)
    stores = open_stores(store_settings)
    try:
        pipelines = _warm_pipelines(settings, featureset_settings)
        events.put((READY, "set", float(index), ()))
        worker = Worker(
            queue=stores.queue,
            state=stores.state,
            blobs=stores.blobs,
            pipelines=pipelines,
            settings=settings,
            sla=sla,
            sink=QueueSink(events),
            chaos=ChaosReader(),
            consumer=consumer_name(index, os.getpid()),
        )
        log.info("worker %d ready (pid %d, device %s)", index, os.getpid(), settings.device)
        worker.run(stop)
    finally:
        stores.close()
