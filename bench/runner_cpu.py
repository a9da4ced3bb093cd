"""The load runner's CPU per request, streamed and not: a figure a busy machine moves less than req/s.

On a shared VM a neighbour takes the runner's core for a while and req/s drops with it; the CPU
time the runner itself spends per request barely moves. This runs the runner (pinned to core 1,
as ``generator_throughput.py`` does) against the scripted target (core 0) for two request counts,
``--short`` and ``--long``, and divides the difference in its user + system time by the
difference in requests, so start-up and shut-down cancel out. Plain and ``--stream`` runs
alternate for ``--rounds`` rounds; the medians and plain / streamed (the throughput ratio one
core would reach if the runner alone were the limit) are printed and written to
bench/out/runner_cpu.json. The target's CPU per request (from /proc, by the same difference) is
printed beside it: if the target spent more per streamed chat than the runner, a streamed rate
would measure the target, not the runner.

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


def proc_cpu_s(pid: int) -> float:
    """User + system seconds a running process has used so far (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    target_us: dict[str, list[float]] = {"plain": [], "stream": []}
    with target(scripted=True) as (url, _name, pid):
        for i in range(args.rounds):
            for mode, extra in (("plain", ()), ("stream", ("--stream",))):
                t0 = proc_cpu_s(pid)
                long_s = cpu_s(url, args.long, *extra)
                t1 = proc_cpu_s(pid)
                short_s = cpu_s(url, args.short, *extra)
                t2 = proc_cpu_s(pid)
                per = (long_s - short_s) / n * 1e6
                per_target = ((t1 - t0) - (t2 - t1)) / n * 1e6
                us[mode].append(per)
                target_us[mode].append(per_target)
                print(
                    f"round {i + 1} {mode}: {per:.1f} us of runner CPU per request "
                    f"(target: {per_target:.1f} us)",
                    flush=True,
                )
    plain, stream = statistics.median(us["plain"]), statistics.median(us["stream"])
    t_plain, t_stream = statistics.median(target_us["plain"]), statistics.median(target_us["stream"])
    reader = os.environ.get("HIF_SSE_READER", "auto")
    print(f"medians: plain {plain:.1f} us, streamed {stream:.1f} us per request (SSE reader: {reader})")
    print(f"plain / streamed = {plain / stream:.3f} (the streamed / non-streamed rate if CPU-bound)")
    print(f"target CPU per request, medians: plain {t_plain:.1f} us, streamed {t_stream:.1f} us")
    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "reader": reader,
        "us_per_request": us,
        "plain_over_streamed": round(plain / stream, 3),
        "target_us_per_request": target_us,
    }
    (OUT / "runner_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
