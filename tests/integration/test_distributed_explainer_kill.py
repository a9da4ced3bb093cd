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
from tests.integration import _cluster, _services, _worker_kill
from tests.integration._cluster import Cluster
from tests.integration._services import MotoServer, RedisServer

pytestmark = pytest.mark.redis
redis_server = _services.redis_server
moto_s3 = _services.moto_s3
cluster_factory = _cluster.cluster_factory

STREAM, GROUP = "{hif}:jobs", "explainers"
TIMED_LOADER = "tests.integration._fake_pipeline:load_timed_pipeline"
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


class ClusterTarget:
    """Two single-worker explainers on Redis; a kill takes down the victim's whole explainer."""

    def __init__(self, cluster: Cluster, explainers: list[Any], raw: redis.Redis) -> None:
        self.gateway = cluster.gateway(*_worker_kill.SLA_FLAGS)
        self.cluster, self.explainers, self.raw = cluster, explainers, raw

    def send(self, i: int) -> tuple[str, str]:
        status, body = self.gateway.chat(content=f"steady {i}")
        assert status == 200, body
        return str(body["explanation"]["trace_id"]), str(body["explanation"]["state"])

    def holder(self) -> tuple[str, int] | None:
        consumer = _victim_consumer(self.raw)
        held = _held_by(self.raw, consumer) if consumer else []
        return (held[0], int(consumer.split(":")[1])) if consumer and held else None

    def kill(self, pid: int) -> None:
        next(e for e in self.explainers if os.getpgid(pid) == e.pid).kill_group()

    def final(self, trace_id: str) -> tuple[str, int] | None:
        record = self.cluster.state.get(trace_id)
        return (str(record.state), record.attempts) if record and record.state.terminal else None


@pytest.mark.slow
def test_a_killed_explainer_costs_no_capacity(
    redis_server: RedisServer, moto_s3: MotoServer, cluster_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The survivor releases the silent consumer's lease after 3 missed beats (0.5 s each here)
    and retries its job; the orphaned lease never reads as queue lag."""
    monkeypatch.setenv("HIF_FAKE_JOB_S", str(_worker_kill.JOB_S))
    monkeypatch.setenv("HIF_CONSUMER_HEARTBEAT_S", "0.5")
    cluster: Cluster = cluster_factory(redis_server, moto_s3)
    flags = ("--lease-max-jobs", "1", "--pipeline-loader", TIMED_LOADER, *_worker_kill.SLA_FLAGS)
    explainers = cluster.explainers(2, *flags)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        target = ClusterTarget(cluster, explainers, raw)
        outcome = _worker_kill.run(target)
    finally:
        raw.close()
    print(outcome.line())
    assert outcome.shed == 0, outcome.line()
    assert outcome.expired <= 1, outcome.line()
    assert (outcome.victim_state, outcome.victim_attempts) == ("complete", 2), outcome.line()
