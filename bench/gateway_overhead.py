"""What the gateway adds on top of its upstream, and how it compares with LiteLLM's proxy.

One run, all on loopback, with the simulator at zero delay (``hif upstream-sim``) so every
microsecond measured is proxy overhead:

1. the simulator hit directly;
2. the simulator through ``hif gateway --upstream http://.../v1`` (uvicorn, then granian);
3. the simulator through LiteLLM's proxy, installed into its own venv under bench/out/.

The simulator sits on core 0 with the load client, each proxy on core 1 (``taskset``). Two load
shapes: 1 connection (latency: added p50/p99 = proxy minus direct) and 64 connections
(throughput: requests/s). Targets are interleaved over several rounds and medians reported, since
the machine may be shared. The load client is wrk when installed (``apt-get install -y wrk``),
else a lean asyncio keep-alive client in this file. Goals: p50 added < 1 ms; gateway/LiteLLM
req/s >= 5x.

    python bench/gateway_overhead.py            # ~3 minutes; add --skip-litellm to leave it out
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from _bench import free_port, pin


def pinned(core: int, argv: list[str]) -> list[str]:
    return [*pin(core), *argv]


ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
METRICS: dict[str, str] = {}  # gateway name -> its /metrics URL
LITELLM_VENV = OUT / "litellm-venv"
BODY = {
    "model": "sim",
    "messages": [{"role": "user", "content": "Hello, how are you today?"}],
    "max_tokens": 16,
}
WRK_LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99)))
end
"""


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status == 200:
                return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def service(
    argv: list[str], ready_url: str, log_name: str, timeout_s: float = 60.0, env: dict[str, str] | None = None
) -> Iterator[bool]:
    """Start a process, yield whether it became ready, always stop it (by its own pid)."""
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / log_name, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            yield wait_ready(ready_url, timeout_s, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- load clients ----------------------------------------------------------------------------------


def run_wrk(url: str, connections: int, duration_s: float) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_LUA % json.dumps(BODY))
    try:
        argv = pinned(
            0,
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                "--timeout",
                "10s",
                "-s",
                fh.name,
                url,
            ],
        )
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30).stdout
    finally:
        os.unlink(fh.name)
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out[-400:]}")
    n, dur_us, errors, non2xx, p50, p99 = (int(x) for x in line.split()[1:])
    return {
        "rps": n / (dur_us / 1e6),
        "requests": n,
        "errors": errors + non2xx,
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
    }


class _Client(asyncio.Protocol):
    """One keep-alive connection sending the same POST back to back (fallback load client)."""

    def __init__(
        self,
        request: bytes,
        stop_at: float,
        latencies: list[float],
        errors: list[int],
        done: asyncio.Future[None],
    ) -> None:
        self.request, self.stop_at, self.latencies, self.errors, self.done = (
            request,
            stop_at,
            latencies,
            errors,
            done,
        )
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        length = next(
            (
                int(ln.split(b":")[1])
                for ln in head.split(b"\r\n")
                if ln.lower().startswith(b"content-length")
            ),
            0,
        )
        if len(rest) < length:
            return
        self.buffer = rest[length:]
        self.latencies.append(time.perf_counter() - self.sent_at)
        if not head.startswith(b"HTTP/1.1 200"):
            self.errors.append(1)
        if time.perf_counter() < self.stop_at:
            self._send()
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def run_asyncio_client(url: str, connections: int, duration_s: float) -> dict[str, float]:
    host_port = url.split("//", 1)[1].split("/", 1)
    host, port = host_port[0].split(":")
    body = json.dumps(BODY).encode()
    request = (
        f"POST /{host_port[1]} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def main() -> tuple[list[float], list[int], float]:
        loop = asyncio.get_running_loop()
        latencies: list[float] = []
        errors: list[int] = []
        started = time.perf_counter()
        stop_at = started + duration_s
        dones = []
        for _ in range(connections):
            done: asyncio.Future[None] = loop.create_future()
            dones.append(done)
            await loop.create_connection(
                lambda d=done: _Client(request, stop_at, latencies, errors, d), host, int(port)
            )
        await asyncio.wait_for(asyncio.gather(*dones), duration_s + 30)
        return latencies, errors, time.perf_counter() - started

    latencies, errors, elapsed = asyncio.run(main())
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {
        "rps": len(latencies) / elapsed,
        "requests": len(latencies),
        "errors": len(errors),
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
    }


def load(url: str, connections: int, duration_s: float) -> dict[str, float]:
    if shutil.which("wrk"):
        return run_wrk(url, connections, duration_s)
    return run_asyncio_client(url, connections, duration_s)


def warm(url: str) -> None:
    load(url, 8, 1.0)  # connection pools, code paths


def rounds(targets: dict[str, str], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Interleave the targets round by round and keep each one's median: the machine is shared, so
    a burst of someone else's load hits every target alike instead of skewing one of them."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for r in range(args.rounds):
        for name, url in targets.items():
            latency = load(url, 1, args.duration_s)
            throughput = load(url, args.connections, args.duration_s)
            samples[name].append(
                {
                    "p50_ms": latency["p50_ms"],
                    "p99_ms": latency["p99_ms"],
                    "rps": throughput["rps"],
                    "rps_p99_ms": throughput["p99_ms"],
                    "errors": latency["errors"] + throughput["errors"],
                }
            )
        print(f"  round {r + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    return {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }


# --- LiteLLM ---------------------------------------------------------------------------------------


def litellm_binary() -> Path | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print("  installing LiteLLM's proxy into bench/out/litellm-venv (once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=120)
        with open(OUT / "litellm-install.log", "wb") as log:
            pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"]
            subprocess.run(pip, check=True, timeout=900, stdout=log, stderr=subprocess.STDOUT)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"  LiteLLM: install failed ({exc}); see bench/out/litellm-install.log. Ratio not measured.")
        return None
    return exe if exe.exists() else None


def start_litellm(stack: contextlib.ExitStack, sim_url: str) -> str | None:
    """LiteLLM's proxy in front of the simulator, as a user would run it (one worker, no master key)."""
    exe = litellm_binary()
    if exe is None:
        return None
    port = free_port()
    config = OUT / "litellm-config.yaml"
    config.write_text(
        "model_list:\n  - model_name: sim\n    litellm_params:\n      model: openai/sim\n"
        f"      api_base: {sim_url}\n      api_key: sk-bench\n"
        "litellm_settings:\n  drop_params: true\n  telemetry: false\n"
    )
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    argv = pinned(
        1,
        [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
    )
    ready = f"http://127.0.0.1:{port}/health/liveliness"
    if not stack.enter_context(service(argv, ready, "litellm.log", timeout_s=180, env=env)):
        print("  LiteLLM: proxy did not start (see bench/out/litellm.log). Ratio not measured.")
        return None
    return f"http://127.0.0.1:{port}/v1/chat/completions"


# --- the run ---------------------------------------------------------------------------------------


def start_targets(stack: contextlib.ExitStack, args: argparse.Namespace) -> dict[str, str] | None:
    hif = [sys.executable, "-m", "hif.cli"]
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}/v1"
    sim_argv = pinned(
        0,
        [*hif, "upstream-sim", "--sim-port", str(sim_port), "--sim-ttft-ms", "0", "--sim-tokens-per-s", "0"],
    )
    if not stack.enter_context(service(sim_argv, f"http://127.0.0.1:{sim_port}/healthz", "sim.log")):
        print("simulator did not start; see bench/out/sim.log")
        return None
    targets = {"direct": f"{sim_url}/chat/completions"}
    for server in args.servers.split(","):
        port, metrics_port = free_port(), free_port()
        data_dir = stack.enter_context(tempfile.TemporaryDirectory())
        argv = [
            *hif,
            "gateway",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--upstream",
            sim_url,
        ]
        argv += ["--data-dir", data_dir, "--server", server, "--log-level", "warning"]
        if stack.enter_context(
            service(pinned(1, argv), f"http://127.0.0.1:{port}/readyz", f"gateway-{server}.log")
        ):
            targets[f"gateway-{server}"] = f"http://127.0.0.1:{port}/v1/chat/completions"
            METRICS[f"gateway-{server}"] = f"http://127.0.0.1:{metrics_port}/metrics"
        else:
            print(f"  gateway ({server}) did not start; see bench/out/gateway-{server}.log")
    if not args.skip_litellm and (url := start_litellm(stack, sim_url)):
        targets["litellm"] = url
    return targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=3.0, help="seconds per load shape per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--servers", default="uvicorn,granian", help="gateway server stacks to measure")
    args = parser.parse_args()
    print(
        f"load client: {'wrk' if shutil.which('wrk') else 'asyncio (wrk not installed)'}; "
        f"sim on core 0 with the client, proxies on core 1; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        targets = start_targets(stack, args)
        if targets is None:
            return 1
        for url in targets.values():
            warm(url)
        results = rounds(targets, args)
        for name, url in METRICS.items():
            results[name].update(own_overhead(url))
    for name, r in results.items():
        print(
            f"  {name:<16} 1 conn p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms | "
            f"{args.connections} conns {r['rps']:>8.0f} req/s (p99 {r['rps_p99_ms']:.1f} ms)  "
            f"errors {r['errors']:.0f}"
        )
    report(results)
    (OUT / "gateway_overhead.json").write_text(json.dumps(results, indent=2))
    return 0


def own_overhead(metrics_url: str) -> dict[str, float]:
    """The gateway's own ``gateway_overhead_seconds`` histogram: time spent in the gateway around
    the upstream call, free of the scheduling delays a shared machine adds between processes."""
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    buckets: dict[str, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        if not line.startswith("gateway_overhead_seconds") or 'route="/v1/chat/completions"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("gateway_overhead_seconds_bucket"):
            buckets[name.split('le="')[1].split('"')[0]] = float(value)
        elif name.startswith("gateway_overhead_seconds_sum"):
            total = float(value)
        elif name.startswith("gateway_overhead_seconds_count"):
            count = float(value)
    if not count:
        return {}
    return {
        "own_mean_ms": total / count * 1000,
        "own_under_0_5ms": buckets.get("0.0005", 0) / count,
        "own_under_1ms": buckets.get("0.001", 0) / count,
    }


def report(results: dict[str, dict[str, float]]) -> None:
    direct = results["direct"]
    print("\nresults (medians of interleaved rounds)")
    for name, r in results.items():
        if name == "direct":
            continue
        added50, added99 = r["p50_ms"] - direct["p50_ms"], r["p99_ms"] - direct["p99_ms"]
        print(
            f"  {name:<16} added latency p50 {added50:.3f} ms, p99 {added99:.3f} ms; "
            f"{r['rps']:.0f} req/s = {r['rps'] / direct['rps']:.2f}x of direct"
        )
        if "own_mean_ms" in r:
            print(
                f"  {'':<16} own overhead metric: mean {r['own_mean_ms']:.3f} ms, "
                f"{r['own_under_0_5ms']:.1%} of requests < 0.5 ms, {r['own_under_1ms']:.1%} < 1 ms"
            )
    for name, r in results.items():
        if name.startswith("gateway"):
            added = r["p50_ms"] - direct["p50_ms"]
            print(f"  goal p50 added < 1 ms, {name}: {'met' if added < 1 else 'NOT met'} ({added:.3f} ms)")
    if "litellm" not in results:
        print("  req/s ratio gateway/LiteLLM: not measured (LiteLLM unavailable)")
        return
    for name, r in results.items():
        if name.startswith("gateway"):
            ratio = r["rps"] / results["litellm"]["rps"]
            verdict = "met" if ratio >= 5 else "NOT met"
            print(f"  req/s ratio {name}/LiteLLM: {ratio:.1f}x (goal >= 5x: {verdict})")


if __name__ == "__main__":
    sys.exit(main())
