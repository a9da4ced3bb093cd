"""How fast the report digests a big results dir, and whether its memory stays flat.

    python bench/report_speed.py                 # 10M chat lines (+ 3 % explanation lines)
    python bench/report_speed.py --lines 1000000 --jobs 1

Writes synthetic records in the runbook's schema (hif/harness/records.py) into a temp dir, with
two chaos windows in chaos_events.jsonl and a sprinkle of corrupt lines, then times
``build_report`` (the scan plus every section) and the rendering from the saved report.json.
Prints the figures, the peak RSS of this process and of the scan workers, and the rate in
lines/s; the goal is 10M lines in under 60 s with memory independent of the line count
(compare ``--lines 1000000`` with the default: peak RSS should barely move).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hif.harness import ReportSettings, build_report, render_report, save_report
from hif.harness.records import CHAOS_EVENTS_FILE, CHAT_FILE, EXPLANATION_FILE

T0 = 1_764_201_600.0
CHUNK = 100_000
BASE_LINES = 1_000_000


CHAT_TEMPLATE = (
    '{{"v":"hif.chat.v1","ts":{ts:.6f},"intended_ts":{its:.6f},"latency_ms":{lat:.3f},'
    '"intended_latency_ms":{ilat:.3f},"status":{status},"error_class":{ec},"error":{err},"tenant":"bench",'
    '"attached":{att},"granularity":{gran},"trace_id":{tid},"explanation_state":{state},"chaos":{chaos},'
    '"shard":"1/1","late":false}}'
)
EXPL_TEMPLATE = (
    '{{"v":"hif.explanation.v1","ts":{ts:.6f},"trace_id":"tr_{i:016x}","tenant":"bench","granularity":"{gran}",'
    '"resolved_granularity":"{gran}","state":"{state}","sla_ms":{sla:.3f},"sla_bound_ms":25.0,"polls":4,'
    '"graph_ok":{ok},"degraded":[],"attribution":"gradient","error":null,"chaos":{chaos},"shard":"1/1"}}'
)
WINDOWS = (("slow-sae", 0.2, 0.4), ("drop-s3", 0.6, 0.8))  # flag, start and end as fractions of the run


def _chaos(frac: float) -> str:
    return json.dumps([f for f, a, b in WINDOWS if a <= frac < b])


def _chat_chunk(base: int, n: int, total: int, duration_s: float, rng: np.random.Generator) -> list[str]:
    """``n`` chat lines from index ``base``: lognormal latency, 3x slower and 10x the 5xx inside chaos."""
    lat = rng.lognormal(3.0, 0.5, n)
    fail_draw, attach_draw = rng.random(n), rng.random(n)
    out = []
    for j in range(n):
        i = base + j
        frac = i / total
        chaos = _chaos(frac)
        slow = chaos != "[]"
        failed = fail_draw[j] < (0.05 if slow else 0.005)
        att = attach_draw[j] < 0.3
        ts = T0 + frac * duration_s
        latency = lat[j] * (3.0 if slow else 1.0)
        out.append(
            CHAT_TEMPLATE.format(
                ts=ts,
                its=ts - 0.0005,
                lat=latency,
                ilat=latency + 0.5,
                status=503 if failed else 200,
                ec='"http_5xx"' if failed else "null",
                err='"upstream unavailable"' if failed else "null",
                att="true" if att else "false",
                gran='"sentence"' if att else "null",
                tid=f'"tr_{i:016x}"' if att else "null",
                state='"queued"' if att else "null",
                chaos=chaos,
            )
        )
    return out


def _explanation_chunk(
    base: int, n: int, total: int, duration_s: float, rng: np.random.Generator
) -> list[str]:
    """One explanation line per 33 chat lines: 20 % token, 2 % failed/expired/orphaned."""
    out = []
    for i in range(base + (-base % 33), base + n, 33):
        frac = i / total
        d = rng.random()
        state = "complete" if d > 0.02 else ("failed", "expired", "orphaned")[int(d * 150) % 3]
        out.append(
            EXPL_TEMPLATE.format(
                ts=T0 + frac * duration_s,
                i=i,
                gran="token" if rng.random() < 0.2 else "sentence",
                state=state,
                sla=rng.lognormal(6.5, 0.4),
                ok="true" if state == "complete" else "false",
                chaos=_chaos(frac),
            )
        )
    return out


def generate(out: Path, lines: int, duration_s: float, seed: int = 7) -> None:
    """``lines`` chat records over ``duration_s`` s; slow-sae in the 2nd fifth, drop-s3 in the 4th.

    Formatting lines in Python is slower than the report reads them, so past BASE_LINES the base
    file is repeated: 10M lines are 10 interleaved copies of a 1M-line run (like 10 merged shards).
    """
    rng = np.random.default_rng(seed)
    base = min(lines, BASE_LINES)
    events = []
    for flag, a, b in WINDOWS:
        events.append(
            {"ts": T0 + a * duration_s, "action": "enable", "flag": flag, "params": {"percent": 50.0}}
        )
        events.append({"ts": T0 + b * duration_s, "action": "disable", "flag": flag, "params": {}})
    (out / CHAOS_EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
    with open(out / CHAT_FILE, "w") as chat, open(out / EXPLANATION_FILE, "w") as expl:
        for start in range(0, base, CHUNK):
            n = min(CHUNK, base - start)
            buf = _chat_chunk(start, n, base, duration_s, rng)
            if start % 1_000_000 == 0:
                buf.append('{"v": "hif.chat.v1", "ts": 17')  # a torn line: counted as corrupt, skipped
            chat.write("\n".join(buf) + "\n")
            expl.write("\n".join(_explanation_chunk(start, n, base, duration_s, rng)) + "\n")
    for name in (CHAT_FILE, EXPLANATION_FILE):
        _repeat(out / name, lines // base)


def _repeat(path: Path, times: int) -> None:
    if times <= 1:
        return
    one = path.read_bytes()
    with open(path, "ab") as fh:
        for _ in range(times - 1):
            fh.write(one)


def measure(out: Path, jobs: int) -> None:
    """Time the report over ``out`` in this (fresh) process; print time, rate and peak RSS."""
    t = time.perf_counter()
    settings = ReportSettings(results_dirs=(out,), jobs=jobs, chaos_path=out / "none.json")
    data = build_report([out], settings)
    built = time.perf_counter() - t
    t = time.perf_counter()
    render_report(save_report(data, out))
    rendered = time.perf_counter() - t
    n = data["inputs"]["lines"]["chat"] + data["inputs"]["lines"]["explanation"]
    self_use, kids_use = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    me, kids = self_use.ru_maxrss / 1024, kids_use.ru_maxrss / 1024
    cpu_s = sum(u.ru_utime + u.ru_stime for u in (self_use, kids_use))
    print(
        f"report: {n:,} lines ({sum(data['inputs']['corrupt_lines'].values())} corrupt skipped) scanned and "
        f"aggregated in {built:.1f} s = {n / built:,.0f} lines/s; render (md + 3 charts) {rendered:.1f} s; "
        f"total {built + rendered:.1f} s (goal < 60 s for 10M)"
    )
    print(
        f"peak RSS: report process {me:.0f} MiB, largest scan worker {kids:.0f} MiB (jobs={jobs or 'auto'})"
    )
    # on a shared machine wall time depends on the neighbours; CPU time does not
    cores = min(jobs, len(os.sched_getaffinity(0))) if jobs else len(os.sched_getaffinity(0))
    print(
        f"cpu: {cpu_s:.1f} CPU-s in all processes = {cpu_s / n * 1e6:.2f} CPU-us/line; on {cores} idle cores "
        f"that is about {cpu_s / cores:.1f} s wall; load average now {os.getloadavg()[0]:.1f}"
    )
    c = data["chat"]
    print(
        f"check: chat p95 {c['latency_ms']['p95_ms']} ms, error rate {c['error_rate']:.4f}, "
        f"chaos windows {len(data['chaos']['windows'])}, buckets of {data['run']['bucket_s']:g} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--duration-s", type=float, default=600.0)
    ap.add_argument("--jobs", type=int, default=0, help="scan processes (0: one per core)")
    ap.add_argument("--dir", type=Path, default=None, help="keep the data here (generated only if missing)")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child's role
    args = ap.parse_args()
    if args.measure:
        measure(args.dir, args.jobs)
        return
    with tempfile.TemporaryDirectory(prefix="hif-report-bench-") as tmp:
        out = args.dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        if not (out / CHAT_FILE).exists():
            t = time.perf_counter()
            generate(out, args.lines, args.duration_s)
            size = (out / CHAT_FILE).stat().st_size / 2**30
            print(f"generated {args.lines:,} chat lines in {time.perf_counter() - t:.1f} s ({size:.2f} GiB)")
        # a fresh process, so the peak RSS is the report's alone, not the generator's
        cmd = [sys.executable, __file__, "--measure", "--dir", str(out), "--jobs", str(args.jobs)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
