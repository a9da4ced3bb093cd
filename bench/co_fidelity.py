"""Coordinated-omission fidelity: does the intended-start p99 match the truth when the server stalls?

The scripted target (``hif.harness.target``) stalls for 1 s every 10 s: a request that arrives
during a stall is answered when the stall ends. For a request scheduled at time t the true
latency is therefore known: the rest of the stall at t (0 outside stalls) plus the base service
time. The runner is driven at a fixed rate twice:

- closed loop: ``--concurrency 8 --rps-limit 200`` (the shared token bucket gives the slots);
- open loop: ``--concurrency 8 --arrival-rate 200`` (a constant schedule).

From each run's own schedule (``intended_ts`` of every record) the script computes the true
latency distribution, and prints both views: the service time (send -> answer, what a
coordinated-omission-prone tool reports) and the intended-start latency (slot -> answer), with
the intended-start p99's error against the true p99. Goal: within 10% in both modes.

    python bench/co_fidelity.py              # ~1 minute
    python bench/co_fidelity.py --seconds 57 # more stalls, same goal
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import STALL_PERIOD_S, STALL_S, runner_cmd, stall_left_s, start_stalling_target, wait_for_phase

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from hif.harness.stats import LatencyHistogram  # noqa: E402

DELAY_MS = 1.0
RATE, CONCURRENCY = 200, 8


def run_mode(url: str, origin: float, mode: str, seconds: float) -> dict[str, float]:
    rate_flag = ["--rps-limit", str(RATE)] if mode == "closed" else ["--arrival-rate", str(RATE)]
    with tempfile.TemporaryDirectory(prefix="hif-co-") as results:
        wait_for_phase(origin, 0.2)
        cmd = runner_cmd(url, CONCURRENCY, seconds, results, "--timeout-seconds", "5", *rate_flag)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode not in (0, 3):
            raise SystemExit(f"runner failed ({proc.returncode}): {proc.stderr}")
        service, intended, true = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
        base = []
        records = []
        with open(Path(results) / "chat_results.jsonl") as fh:
            for line in fh:
                r = json.loads(line)
                if r["latency_ms"] is None:
                    continue
                records.append(r)
                service.record(r["latency_ms"])
                intended.record(r["intended_latency_ms"])
                if stall_left_s(r["intended_ts"], origin) == 0.0 and stall_left_s(r["ts"], origin) == 0.0:
                    base.append(r["latency_ms"])
        base.sort()
        base_ms = base[len(base) // 2] if base else DELAY_MS
        for r in records:  # what an ideal generator following this schedule would have measured
            true.record(stall_left_s(r["intended_ts"], origin) * 1000.0 + base_ms)
        summary = json.loads((Path(results) / "summary.json").read_text())
    return {
        "requests": len(records),
        "rps": summary["chat"]["rps"],
        "valid": summary["generator"]["valid"],
        "service_p50_ms": service.percentile(50),
        "service_p99_ms": service.percentile(99),
        "intended_p50_ms": intended.percentile(50),
        "intended_p99_ms": intended.percentile(99),
        "true_p99_ms": true.percentile(99),
        "base_service_ms": base_ms,
        "error": intended.percentile(99) / true.percentile(99) - 1.0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=27.0, help="per mode; N*10 - 3 ends between stalls")
    args = p.parse_args()
    proc, url, origin = start_stalling_target("--delay-ms", str(DELAY_MS))
    try:
        results = {mode: run_mode(url, origin, mode, args.seconds) for mode in ("closed", "open")}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"target stalls {STALL_S:g} s every {STALL_PERIOD_S:g} s; {RATE} req/s offered, "
        f"{CONCURRENCY} connections, {args.seconds:g} s per mode"
    )
    print(
        f"{'mode':<7} {'requests':>8} {'svc p50':>8} {'svc p99':>8} {'int p50':>8} {'int p99':>8} "
        f"{'true p99':>9} {'error':>7}"
    )
    for mode, r in results.items():
        print(
            f"{mode:<7} {r['requests']:>8} {r['service_p50_ms']:>8.1f} {r['service_p99_ms']:>8.1f} "
            f"{r['intended_p50_ms']:>8.1f} {r['intended_p99_ms']:>8.1f} {r['true_p99_ms']:>9.1f} "
            f"{r['error']:>+7.1%}"
        )
    ok = all(abs(r["error"]) <= 0.10 for r in results.values())
    print(
        f"intended-start p99 within 10% of the true p99 in both modes: {'yes' if ok else 'NO'} "
        "(svc = service time, the coordinated-omission view; int = intended start)"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "co_fidelity.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
