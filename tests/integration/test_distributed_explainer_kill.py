"""kill -9 of one of two explainers mid-job: its leased jobs complete on the other, and a graph written
twice is written identically (the bucket is versioned, so every write is counted and compared)."""

from __future__ import annotations

import os
from typing import Any

import boto3
import orjson
import pytest
import redis

from hif.chaos import Fault
from hif.store.base import TraceState
from tests.conftest import wait_until
from tests.integration import _cluster, _services
from tests.integration._cluster import Cluster
from tests.integration._services import MotoServer, RedisServer

pytestmark = pytest.mark.redis
redis_server = _services.redis_server
moto_s3 = _services.moto_s3
cluster_factory = _cluster.cluster_factory

STREAM, GROUP = "{hif}:jobs", "explainers"
# Short leases so the dead explainer's jobs come back within seconds; budgets long enough that the
# backpressure ladder never expires a job early (that would be a different test).
EXPLAINER_FLAGS = (
    "--visibility-timeout-s",
    "2",
    "--lease-max-jobs",
    "2",
    "--sentence-budget-s",
    "60",
    "--token-budget-s",
    "60",
)


def _held_by(raw: redis.Redis, consumer: str) -> list[str]:
    """Trace ids of the jobs ``consumer`` holds right now."""
    rows = raw.xpending_range(STREAM, GROUP, min="-", max="+", count=100, consumername=consumer)
    ids = [row["message_id"] for row in rows]
    entries: list[Any] = [raw.xrange(STREAM, min=i, max=i) for i in ids]
    return [orjson.loads(entry[0][1][b"job"])["trace_id"] for entry in entries if entry]


def _victim_consumer(raw: redis.Redis) -> str | None:
    summary = raw.xpending(STREAM, GROUP)
    busy = [c["name"] for c in summary.get("consumers") or [] if int(c["pending"]) > 0]
    return busy[0].decode() if busy else None


def test_jobs_of_a_killed_explainer_complete_on_the_other(
    redis_server: RedisServer, moto_s3: MotoServer, cluster_factory: Any
) -> None:
    cluster: Cluster = cluster_factory(redis_server, moto_s3)
    s3 = boto3.session.Session().client("s3", endpoint_url=moto_s3.endpoint_url, region_name="us-east-1")
    s3.put_bucket_versioning(Bucket=cluster.bucket, VersioningConfiguration={"Status": "Enabled"})
    gateway = cluster.gateway()
    explainers = cluster.explainers(2, *EXPLAINER_FLAGS)
    cluster.chaos(Fault(flag="slow-sae", percent=100, jitter_ms=1200))  # jobs take 0.6-1.8 s each
    trace_ids = []
    for i in range(6):
        status, body = gateway.chat(content=f"kill test {i}")
        assert status == 200 and body["explanation"]["state"] == "queued"
        trace_ids.append(body["explanation"]["trace_id"])

    raw = redis.Redis.from_url(redis_server.url)
    seen: list[str] = []

    def someone_holds_a_job() -> bool:
        name = _victim_consumer(raw)
        if name:
            seen.append(name)
        return name is not None

    wait_until(someone_holds_a_job, timeout_s=30)
    consumer = seen[-1]
    worker_pid = int(consumer.split(":")[1])  # consumer names are host:pid:index
    victim = next(e for e in explainers if os.getpgid(worker_pid) == e.pid)
    victim.kill_group()
    # Read what the dead consumer held after the kill: its pending entries stay listed under its
    # name until the other explainer claims them (after the 2 s visibility timeout).
    held = _held_by(raw, consumer)

    records = cluster.wait_terminal(trace_ids, timeout_s=60)
    assert {t: r.state for t, r in records.items()} == dict.fromkeys(trace_ids, TraceState.COMPLETE)
    assert held and all(records[t].attempts >= 2 for t in held)  # re-delivered, finished elsewhere
    assert cluster.queue.depth() == 0
    versions = s3.list_object_versions(Bucket=cluster.bucket).get("Versions", [])
    by_key: dict[str, set[str]] = {}
    for version in versions:
        by_key.setdefault(version["Key"], set()).add(version["ETag"])
    assert len(by_key) == len(trace_ids)
    assert all(len(etags) == 1 for etags in by_key.values())  # duplicate writes, if any, were identical
    raw.close()
    s3.close()
