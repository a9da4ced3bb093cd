"""Job lifecycles per second through each store backend: SQLite (embedded) vs Redis (distributed).

One lifecycle is what the gateway and one explainer worker do per explanation, minus the model:
``TraceStore.create`` + ``JobQueue.enqueue`` (gateway, in batches), then ``lease`` (batches of
``--lease``), ``transition`` queued->running, ``transition`` running->complete and ``ack``. One
process, one thread, both backends in the same run on this machine; the ratio is the figure to
read (absolute numbers move with the machine's load).

    python bench/store_backends.py                     # 2000 jobs per backend, ~10-20 s
    python bench/store_backends.py --jobs 500 --lease 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hif.store import open_queue, open_state  # noqa: E402
from hif.store.base import Job, TraceRecord, TraceState  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def lifecycle_rate(url: str, jobs: int, lease_batch: int, enqueue_batch: int) -> dict[str, float]:
    queue, state = open_queue(url), open_state(url)
    now = time.time()
    records = [
        TraceRecord(
            trace_id=f"t{i:06d}",
            tenant="bench",
            state=TraceState.QUEUED,
            granularity_requested="sentence",
            granularity="sentence",
            features_requested="fs",
            features_resolved="fs",
            created_at=now,
            updated_at=now,
            expires_at=now + 600,
        )
        for i in range(jobs)
    ]
    payload = [
        Job(
            trace_id=r.trace_id,
            tenant="bench",
            granularity="sentence",
            featureset="fs",
            prompt="p" * 200,
            completion="c" * 400,
            created_at=now,
            expires_at=now + 600,
            budget_s=1.5,
        )
        for r in records
    ]
    started = time.perf_counter()
    for i in range(0, jobs, enqueue_batch):
        state.create(records[i : i + enqueue_batch])
        queue.enqueue(payload[i : i + enqueue_batch])
    enqueued = time.perf_counter()
    done = 0
    while done < jobs:
        for lease in queue.lease("bench", max_jobs=lease_batch, visibility_timeout_s=60):
            tid = lease.job.trace_id
            state.transition(tid, from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING, attempts=1)
            state.transition(
                tid,
                from_states=[TraceState.RUNNING],
                to_state=TraceState.COMPLETE,
                graph_key=f"graphs/{tid}.json",
            )
            queue.ack(lease)
            done += 1
    finished = time.perf_counter()
    assert state.counts()["complete"] == jobs and queue.depth() == 0
    queue.close()
    state.close()
    return {
        "enqueue_per_s": jobs / (enqueued - started),
        "work_per_s": jobs / (finished - enqueued),
        "lifecycle_per_s": jobs / (finished - started),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--lease", type=int, default=8, help="jobs per lease call (lease_max_jobs)")
    parser.add_argument("--enqueue-batch", type=int, default=64, help="jobs per gateway write")
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("bench: redis-server is not on PATH (apt-get install redis-server)", file=sys.stderr)
        return 2
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = (args.jobs, args.lease, args.enqueue_batch)
        results["sqlite"] = lifecycle_rate(f"sqlite:///{tmp}/bench.db", *sizes)
        port = free_port()
        proc = subprocess.Popen(
            [
                redis_bin,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                try:
                    open_queue(url).depth()
                    break
                except Exception:
                    time.sleep(0.05)
            results["redis"] = lifecycle_rate(url, *sizes)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(
        f"{'backend':<8} {'enqueue/s':>10} {'work/s':>10} {'lifecycle/s':>12}"
        f"   (jobs={args.jobs}, lease={args.lease})"
    )
    for name, r in results.items():
        print(f"{name:<8} {r['enqueue_per_s']:>10.0f} {r['work_per_s']:>10.0f} {r['lifecycle_per_s']:>12.0f}")
    ratio = results["redis"]["lifecycle_per_s"] / results["sqlite"]["lifecycle_per_s"]
    print(f"redis / sqlite lifecycle ratio: {ratio:.2f}")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "store_backends.json").write_text(
        json.dumps({"args": vars(args), "results": results, "redis_over_sqlite": ratio}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
