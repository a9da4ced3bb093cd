"""``hif gateway`` / ``hif upstream-sim`` on free ports for the HTTP tests (started via ``_procs``)."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import free_port
from tests.integration._procs import Process, hif_cmd, http_ready, start

FEATURESETS = """
default = "tiny"
[featuresets."tiny"]
description = "test featureset: its SAE file exists, its model is an installed package"
model = "package:orjson"
layers = [1]
latents = 64
k = 4
sae_path = "tiny"
[featuresets."sae-gpt4-2m"]
description = "not served here"
model = "gpt-4"
layers = [0]
latents = 2097152
k = 32
unavailable_reason = "GPU featureset"
"""
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "Say something."}]}


def write_featuresets(folder: Path) -> Path:
    (folder / "tiny").mkdir(parents=True, exist_ok=True)
    (folder / "tiny" / "sae_weights.safetensors").write_bytes(b"")
    path = folder / "featuresets.toml"
    path.write_text(FEATURESETS)
    return path


@dataclasses.dataclass
class Proc:
    port: int
    proc: Process
    data_dir: Path
    metrics_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        raw = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(
                method, path, body=raw, headers={"content-type": "application/json", **(headers or {})}
            )
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int | None:
        """The exit status after ``sig``; None when it had to be killed."""
        return self.proc.stop(sig, timeout_s=timeout_s)


def start_hif(
    argv: list[str], port: int, data_dir: Path, ready_path: str, log_dir: Path, metrics_port: int = 0
) -> Proc:
    name = f"{argv[0]}-{port}"
    ready = http_ready(f"http://127.0.0.1:{port}{ready_path}")
    proc = start(hif_cmd(*argv), name=name, log_dir=log_dir, ready=ready, timeout_s=60)
    return Proc(port=port, proc=proc, data_dir=data_dir, metrics_port=metrics_port)


@contextlib.contextmanager
def gateway(tmp: Path, *extra: str, metrics: bool = False) -> Iterator[Proc]:
    """A gateway with a zero-delay simulator and a test featureset registry (``tiny`` is served)."""
    port, metrics_port = free_port(), (free_port() if metrics else 0)
    data_dir = tmp / f"data-{port}"
    argv = [
        "gateway",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--data-dir",
        str(data_dir),
        "--featuresets",
        str(write_featuresets(tmp / "fs")),
        "--sim-ttft-ms",
        "0",
        "--sim-tokens-per-s",
        "0",
        *extra,
    ]
    proc = start_hif(argv, port, data_dir, "/readyz", tmp, metrics_port)
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def upstream_sim(tmp: Path, *extra: str) -> Iterator[Proc]:
    port = free_port()
    argv = ["upstream-sim", "--sim-port", str(port), "--sim-ttft-ms", "0", "--sim-tokens-per-s", "0", *extra]
    proc = start_hif(argv, port, tmp, "/healthz", tmp)
    try:
        yield proc
    finally:
        proc.stop()
