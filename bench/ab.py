"""Before/after: run one bench script from two git revisions in interleaved rounds and compare medians.

A refactor must not slow the hot paths, and on a shared 2-core VM one run moves by 20% or more
between back-to-back runs, so a single before/after pair says little. This script checks the
base revision out into a scratch worktree (``bench/out/ab-<rev>``), then alternates: base, head,
base, head, ... each a fresh process running one round of the named bench, and prints each
round, the medians and head / base.

    python bench/ab.py --base 718a381 hotpath                 # runner hot path, us per request
    python bench/ab.py --base 718a381 generator --rounds 5    # load runner req/s and runner / wrk
    python bench/ab.py --base 862f83e hotpath-stream          # streamed hot path, a read per SSE chunk
    python bench/ab.py --base 862f83e stream --rounds 5       # streamed / non-streamed runner req/s
    python bench/ab.py --base <rev> stream-cpu --rounds 3     # runner CPU per request (runner_cpu.py)

The head is this working tree. Each preset names the bench command and how to read its figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


@dataclass(frozen=True)
class Preset:
    argv: list[str]
    figures: Callable[[Path, str], dict[str, float]]
    unit: str


def _hotpath(_tree: Path, stdout: str) -> dict[str, float]:
    runner = re.search(r"runner hot path .*?:\s+([\d.]+) us", stdout)
    bare = re.search(r"bare httptools parse.*?:\s+([\d.]+) us", stdout)
    if not runner or not bare:
        raise RuntimeError(f"hotpath printed no figure:\n{stdout}")
    figures = {"runner_us": float(runner.group(1)), "bare_us": float(bare.group(1))}
    token_pass = re.search(r"token pass .*?:\s+([\d.]+) us", stdout)
    if token_pass:
        figures["token_pass_us"] = float(token_pass.group(1))
    return figures


def _generator(tree: Path, _stdout: str) -> dict[str, float]:
    data = json.loads((tree / "bench" / "out" / "generator_throughput_c64.json").read_text())
    rps = data["req_per_s"]
    return {
        "runner_rps": float(rps["hif load runner (end to end)"]),
        "wrk_rps": float(rps["wrk"]),
        "runner_over_wrk": float(data["runner_over_wrk"] or 0.0),
    }


def _stream(tree: Path, _stdout: str) -> dict[str, float]:
    data = json.loads((tree / "bench" / "out" / "generator_throughput_stream_c64.json").read_text())
    return {
        "non_streamed_rps": float(data["non_streamed_req_per_s"][0]),
        "streamed_rps": float(data["streamed_req_per_s"][0]),
        "streamed_over_non_streamed": float(data["streamed_over_non_streamed"] or 0.0),
    }


def _stream_cpu(tree: Path, _stdout: str) -> dict[str, float]:
    data = json.loads((tree / "bench" / "out" / "runner_cpu.json").read_text())
    us = data["us_per_request"]
    return {
        "plain_us": float(us["plain"][0]),
        "streamed_us": float(us["stream"][0]),
        "plain_over_streamed": float(data["plain_over_streamed"]),
    }


PRESETS = {
    "hotpath": Preset(["bench/hotpath.py", "--rounds", "1", "--requests", "100000"], _hotpath, "us"),
    "generator": Preset(
        ["bench/generator_throughput.py", "--rounds", "1", "--skip-locust", "--seconds", "6"],
        _generator,
        "req/s",
    ),
    # Streamed: the hot path with a read per chunk, and the runner end to end.
    "hotpath-stream": Preset(
        ["bench/hotpath.py", "--rounds", "1", "--requests", "5000", "--stream"], _hotpath, "us"
    ),
    "stream": Preset(
        ["bench/generator_throughput.py", "--stream", "--rounds", "1", "--seconds", "6"], _stream, "req/s"
    ),
    # The runner's CPU per request (bench/runner_cpu.py): steadier than req/s on a busy machine.
    "stream-cpu": Preset(["bench/runner_cpu.py", "--rounds", "1"], _stream_cpu, "us"),
}


def base_tree(rev: str) -> Path:
    tree = OUT / f"ab-{rev}"
    if not tree.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True)
    return tree


def run_once(tree: Path, preset: Preset) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # each tree imports its own copy of hif
    done = subprocess.run(
        [sys.executable, *preset.argv], cwd=tree, env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"{preset.argv[0]} failed in {tree}:\n{done.stdout}\n{done.stderr}")
    return preset.figures(tree, done.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("--base", required=True, help="git revision to compare against (the 'before')")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    preset = PRESETS[args.preset]
    trees = {"base": base_tree(args.base), "head": ROOT}
    rounds: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    for i in range(args.rounds):
        for side, tree in trees.items():  # alternate, so drift hits both sides alike
            rounds[side].append(run_once(tree, preset))
            print(f"round {i + 1} {side}: {rounds[side][-1]}", flush=True)
    print(f"\n{args.preset}: medians of {args.rounds} interleaved rounds (base {args.base}, head: this tree)")
    for key in rounds["base"][0]:
        b = statistics.median(r[key] for r in rounds["base"])
        h = statistics.median(r[key] for r in rounds["head"])
        print(f"  {key:<18} base {b:10.2f}   head {h:10.2f}   head / base = {h / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
