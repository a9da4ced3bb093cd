"""The load runner's CPU per request, streamed and not: a figure a busy machine moves less than req/s.

On a shared VM a neighbour takes the runner's core for a while and req/s drops with it; the CPU
time the runner itself spends per request barely moves. This runs the runner (pinned to core 1,
as ``generator_throughput.py`` does) against the scripted target (core 0) for two request counts,
``--short`` and ``--long``, and divides the difference in its user + system time by the
difference in requests, so start-up and shut-down cancel out. Plain and ``--stream`` runs
alternate for ``--rounds`` rounds; the medians and plain / streamed (the throughput ratio one
core would reach if the runner alone were the limit) are printed and written to
bench/out/runner_cpu.json.

    python bench/runner_cpu.py                        # 3 rounds, 5,000 and 45,000 requests
    HIF_SSE_READER=python python bench/runner_cpu.py  # the same with the pure-Python SSE reader
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import runner_cmd
from generator_throughput import target

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def cpu_s(url: str, requests: int, *extra: str) -> float:
    """User + system seconds of one runner process sending ``requests`` chats."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="hif-cpu-") as results:
        cmd = runner_cmd(url, 64, 300, results, "--max-requests", str(requests), "--max-tokens", "0", *extra)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode not in (0, 1, 3):
        raise SystemExit(f"load runner failed ({proc.returncode}): {proc.stderr.strip()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--short", type=int, default=5_000)
    p.add_argument("--long", type=int, default=45_000)
    args = p.parse_args()
    n = args.long - args.short
    us: dict[str, list[float]] = {"plain": [], "stream": []}
    with target(scripted=True) as (url, _name):
        for i in range(args.rounds):
            for mode, extra in (("plain", ()), ("stream", ("--stream",))):
                per = (cpu_s(url, args.long, *extra) - cpu_s(url, args.short, *extra)) / n * 1e6
                us[mode].append(per)
                print(f"round {i + 1} {mode}: {per:.1f} us of runner CPU per request", flush=True)
    plain, stream = statistics.median(us["plain"]), statistics.median(us["stream"])
    reader = os.environ.get("HIF_SSE_READER", "auto")
    print(f"medians: plain {plain:.1f} us, streamed {stream:.1f} us per request (SSE reader: {reader})")
    print(f"plain / streamed = {plain / stream:.3f} (the streamed / non-streamed rate if CPU-bound)")
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"reader": reader, "us_per_request": us, "plain_over_streamed": round(plain / stream, 3)}
    (OUT / "runner_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
