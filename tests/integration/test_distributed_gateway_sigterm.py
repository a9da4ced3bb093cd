"""SIGTERM of a gateway replica: in-flight chats finish, new connections are refused, and the jobs it
accepted stay queued in Redis for the explainer fleet (none runs here, so they must still be there)."""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hif.store.base import TraceState
from tests.conftest import free_port, wait_until
from tests.integration import _cluster, _services
from tests.integration._cluster import Cluster, metric_value
from tests.integration._services import MotoServer, RedisServer

pytestmark = pytest.mark.redis
redis_server = _services.redis_server
moto_s3 = _services.moto_s3
cluster_factory = _cluster.cluster_factory

IN_FLIGHT = 4
UPSTREAM_S = 3.0  # the simulated upstream's time to first token: the chats are in flight this long


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def test_sigterm_drains_in_flight_chats_and_keeps_jobs_queued(
    redis_server: RedisServer, moto_s3: MotoServer, cluster_factory: Any
) -> None:
    cluster: Cluster = cluster_factory(redis_server, moto_s3)
    gateway = cluster.gateway(
        "--sim-ttft-ms",
        str(UPSTREAM_S * 1000),
        "--sim-ttft-jitter",
        "0",
        "--shutdown-timeout-s",
        "20",
        metrics_port=free_port(),
    )
    assert gateway.metrics_url is not None
    metrics_url = gateway.metrics_url
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        chats = [pool.submit(gateway.chat, content=f"drain {i}", timeout_s=30) for i in range(IN_FLIGHT)]
        wait_until(lambda: metric_value(metrics_url, "gateway_requests_in_flight") >= IN_FLIGHT, timeout_s=10)
        sent_at = time.monotonic()
        gateway.proc.signal(signal.SIGTERM)
        wait_until(lambda: _refused(gateway.port), timeout_s=UPSTREAM_S / 2)  # stops accepting at once
        assert not all(c.done() for c in chats) and time.monotonic() - sent_at < UPSTREAM_S
        results = [c.result(timeout=30) for c in chats]

    assert [status for status, _ in results] == [200] * IN_FLIGHT  # every in-flight chat finished
    trace_ids = [body["explanation"]["trace_id"] for _, body in results]
    assert gateway.proc.wait(timeout_s=30) == 0  # a clean exit after the drain
    # The buffer was flushed on the way out: every accepted job waits in the queue for an explainer.
    records = [cluster.state.get(t) for t in trace_ids]
    assert [r.state if r else None for r in records] == [TraceState.QUEUED] * IN_FLIGHT
    assert cluster.queue.depth() == IN_FLIGHT
    leased = cluster.queue.lease("checker", max_jobs=10, visibility_timeout_s=30)
    assert sorted(le.job.trace_id for le in leased) == sorted(trace_ids)
