"""Start ``hif gateway`` / ``hif upstream-sim`` as real processes on free ports for integration tests."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import free_port, wait_http_ok

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
    proc: subprocess.Popen[bytes]
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

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start(
    argv: list[str], port: int, data_dir: Path, ready_path: str, log: Path, metrics_port: int = 0
) -> Proc:
    out = open(log, "wb")  # noqa: SIM115  (the child keeps writing to it until stopped)
    proc = subprocess.Popen([sys.executable, "-m", "hif.cli", *argv], stdout=out, stderr=subprocess.STDOUT)
    out.close()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}{ready_path}", timeout_s=60)
    except BaseException:
        proc.kill()
        proc.wait()
        print(log.read_text()[-3000:])
        raise
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
    proc = start(argv, port, data_dir, "/readyz", tmp / f"gateway-{port}.log", metrics_port)
    try:
        yield proc
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.stop()


@contextlib.contextmanager
def upstream_sim(tmp: Path, *extra: str) -> Iterator[Proc]:
    port = free_port()
    argv = ["upstream-sim", "--sim-port", str(port), "--sim-ttft-ms", "0", "--sim-tokens-per-s", "0", *extra]
    proc = start(argv, port, tmp, "/healthz", tmp / f"sim-{port}.log")
    try:
        yield proc
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.stop()
