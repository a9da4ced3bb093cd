"""Redis-only behaviour: outages and restarts, bounded timeouts, TTLs, URL options, poison entries.

The semantics shared with SQLite live in test_store_contract.py; these tests need a real
redis-server (started per test on a free port) and are skipped without one.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis

from hif.errors import ConfigError, StoreError, StoreUnavailableError
from hif.store._redis_client import parse_url
from hif.store.base import TraceState
from hif.store.redis import RedisJobQueue, RedisTraceStore
from tests._records import make_job, make_record
from tests.conftest import free_port
from tests.integration import _services
from tests.integration._services import RedisServer

pytestmark = pytest.mark.redis
redis_server = _services.redis_server  # fixtures shared with the integration tests
durable_redis = _services.durable_redis


def test_url_options_are_split_from_redis_py_options() -> None:
    opts = parse_url("redis://:secret@h:6380/2?prefix=blue&retention_s=5&socket_timeout=0.5&group=g2")
    assert (opts.prefix, opts.group, opts.retention_s, opts.socket_timeout_s) == ("blue", "g2", 5.0, 0.5)
    assert "prefix" not in opts.url and "socket_timeout=0.5" in opts.url
    assert opts.safe_url == "redis://h:6380/2" and opts.key("jobs") == "{blue}:jobs"
    with pytest.raises(ConfigError, match="queue"):
        parse_url("http://h:1/0")
    with pytest.raises(ConfigError, match="retention_s"):
        parse_url("redis://h/0?retention_s=soon", key="state")


def test_prefixes_keep_two_deployments_apart(redis_server: RedisServer) -> None:
    blue = RedisJobQueue(redis_server.url + "?prefix=blue")
    green = RedisJobQueue(redis_server.url + "?prefix=green")
    blue.enqueue([make_job("a")])
    assert (blue.depth(), green.depth()) == (1, 0)
    assert green.lease("w", max_jobs=1, visibility_timeout_s=5) == []


def test_unreachable_redis_fails_fast_with_store_unavailable() -> None:
    q = RedisJobQueue(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="Redis unavailable during enqueue"):
        q.enqueue([make_job("a")])
    with pytest.raises(StoreUnavailableError):
        RedisTraceStore(f"redis://127.0.0.1:{free_port()}/0").get("t")
    assert time.monotonic() - started < 5


def test_frozen_redis_times_out_instead_of_hanging(redis_server: RedisServer) -> None:
    q = RedisJobQueue(redis_server.url + "?socket_timeout=0.3")
    q.enqueue([make_job("a")])
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="TimeoutError"):
            q.depth()
        assert time.monotonic() - started < 3
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert q.depth() == 1  # the same client carries on once Redis answers again


def test_restart_without_persistence_reconnects_and_recreates_the_group(redis_server: RedisServer) -> None:
    q, s = RedisJobQueue(redis_server.url), RedisTraceStore(redis_server.url)
    q.enqueue([make_job("a")])
    assert q.lease("w", max_jobs=1, visibility_timeout_s=5)
    redis_server.stop()
    with pytest.raises(StoreUnavailableError):
        q.lease("w", max_jobs=1, visibility_timeout_s=5)
    with pytest.raises(StoreUnavailableError):
        s.create([make_record("t")])
    redis_server.start()  # same port, empty data set
    q.enqueue([make_job("b")])  # no new client: the pool dials again
    assert [le.job.trace_id for le in q.lease("w", max_jobs=1, visibility_timeout_s=5)] == ["b"]
    s.create([make_record("t")])
    assert s.counts()["queued"] == 1


def test_durable_restart_keeps_jobs_leases_and_traces(durable_redis: RedisServer) -> None:
    q, s = RedisJobQueue(durable_redis.url), RedisTraceStore(durable_redis.url)
    q.enqueue([make_job("held"), make_job("waiting")])
    s.create([make_record("held"), make_record("waiting")])
    held = q.lease("dies", max_jobs=1, visibility_timeout_s=0.5)[0]
    s.transition("held", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING)
    durable_redis.kill()  # kill -9: only what the AOF fsynced survives
    durable_redis.start()
    time.sleep(0.5)  # let the dead holder's lease deadline pass
    got = {le.job.trace_id: le.attempt for le in q.lease("other", max_jobs=5, visibility_timeout_s=5)}
    assert got == {"held": held.attempt + 1, "waiting": 1}
    assert s.counts()["running"] == 1 and s.counts()["queued"] == 1


def test_trace_hashes_expire_after_retention(redis_server: RedisServer) -> None:
    s = RedisTraceStore(redis_server.url + "?retention_s=30")
    raw = redis.Redis.from_url(redis_server.url)
    s.create([make_record("t", expires_at=time.time() + 60)])
    ttl_s = raw.pttl("{hif}:trace:t") / 1000
    assert 85 < ttl_s <= 90  # expires_at + retention
    s.transition("t", from_states=[TraceState.QUEUED], to_state=TraceState.COMPLETE)
    assert 25 < raw.pttl("{hif}:trace:t") / 1000 <= 30  # finished: kept for the retention only
    assert raw.zcard("{hif}:deadlines") == 0
    raw.close()


def test_poison_entry_is_dropped_not_redelivered_forever(redis_server: RedisServer) -> None:
    q = RedisJobQueue(redis_server.url)
    q.enqueue([make_job("good")])
    raw = redis.Redis.from_url(redis_server.url)
    raw.xadd("{hif}:jobs", {"job": b"not json"})
    raw.close()
    got = q.lease("w", max_jobs=5, visibility_timeout_s=5)
    assert [le.job.trace_id for le in got] == ["good"]
    assert q.depth() == 0 and q.release("w") == 1  # the poison entry is gone: only "good" is held


def test_group_lost_to_a_flush_is_recreated(redis_server: RedisServer) -> None:
    q = RedisJobQueue(redis_server.url)
    q.enqueue([make_job("a")])
    lease = q.lease("w", max_jobs=1, visibility_timeout_s=5)[0]
    raw = redis.Redis.from_url(redis_server.url)
    raw.flushall()
    raw.close()
    q.ack(lease)  # the lease is gone with the data: a harmless no-op
    q.enqueue([make_job("b")])
    assert [le.job.trace_id for le in q.lease("w", max_jobs=1, visibility_timeout_s=5)] == ["b"]


def test_unknown_trace_fields_are_refused(redis_server: RedisServer) -> None:
    s = RedisTraceStore(redis_server.url)
    s.create([make_record("t")])
    with pytest.raises(StoreError, match="colour"):
        s.update("t", colour="red")
    with pytest.raises(StoreError, match="state"):
        s.update("t", state="complete")
