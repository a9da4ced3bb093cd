"""Redis killed and restarted under chat load: chat keeps answering, explanations get a clear state,
the gateway and explainer recover without a restart, and no accepted job is lost.

Redis runs with fsync-always AOF (as a production Redis holding a job queue should), so a write
it acknowledged survives the kill; what the gateway could not write yet waits in its buffer.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from hif.store.base import TraceState
from tests.conftest import wait_until
from tests.integration import _cluster, _services
from tests.integration._cluster import Cluster, Gateway
from tests.integration._services import MotoServer, RedisServer

pytestmark = pytest.mark.redis
durable_redis = _services.durable_redis
moto_s3 = _services.moto_s3
cluster_factory = _cluster.cluster_factory

MAX_CHATS = 400  # bounds the load loop; time bounds it too
PACE_S = 0.02  # the load shape: one chat every 20 ms at most, from one client


class ChatLoad:
    """One client sending explained chats until stopped; every answer is kept with its phase."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.phase = "before"
        self.results: list[tuple[str, int, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChatLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def count(self, phase: str) -> int:
        return sum(1 for p, _, _ in self.results if p == phase)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and len(self.results) < MAX_CHATS and time.monotonic() < deadline:
            phase = self.phase
            status, body = self.gateway.chat(content=f"restart load {len(self.results)}", timeout_s=10)
            self.results.append((phase, status, body))
            self._stop.wait(PACE_S)


def test_redis_restart_during_load(
    durable_redis: RedisServer, moto_s3: MotoServer, cluster_factory: Any
) -> None:
    cluster: Cluster = cluster_factory(durable_redis, moto_s3)
    gateway = cluster.gateway("--backpressure-refresh-s", "0.1")
    cluster.explainer("--sentence-budget-s", "60", "--token-budget-s", "60")
    with ChatLoad(gateway) as load:
        wait_until(lambda: load.count("before") >= 10, timeout_s=30)
        load.phase = "outage"
        durable_redis.kill()
        wait_until(lambda: load.count("outage") >= 10, timeout_s=30)
        load.phase = "after"
        durable_redis.start()  # same port, same AOF: the gateway and explainer reconnect on their own
        wait_until(lambda: load.count("after") >= 10, timeout_s=30)

    assert [(p, s) for p, s, _ in load.results if s != 200] == []  # chat kept answering throughout
    explanations = [(phase, body["explanation"]) for phase, _, body in load.results]
    states = {e["state"] for _, e in explanations}
    assert states <= {"queued", "shed"}
    assert all("store unavailable" in e["reason"] for _, e in explanations if e["state"] == "shed")

    # Every trace the gateway answered for reaches a terminal state in Redis; accepted ones complete.
    records = cluster.wait_terminal([e["trace_id"] for _, e in explanations], timeout_s=90)
    for _, e in explanations:
        expected = TraceState.COMPLETE if e["state"] == "queued" else TraceState.SHED
        assert records[e["trace_id"]].state is expected, (e, records[e["trace_id"]])
    assert cluster.queue.depth() == 0
    outage_trace = next(e["trace_id"] for p, e in explanations if p == "outage")
    status, body = gateway.request(f"/v1/traces/{outage_trace}/status")  # the same gateway process
    assert status == 200 and body["state"] in ("complete", "shed")
