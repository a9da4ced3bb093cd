"""S3 endpoint down: the explainer retries the persist, then fails the trace with a persist error;
its metrics show the retries and failures; once the endpoint is back, new traces complete.

A TCP proxy stands in for the network between the fleet and S3, so cutting it makes the endpoint
unreachable while moto keeps the bucket for the recovery half.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hif.store.base import TraceState
from tests.conftest import free_port, wait_until
from tests.integration import _cluster, _services
from tests.integration._cluster import Cluster, Gateway, metric_value
from tests.integration._services import MotoServer, RedisServer, TcpProxy

pytestmark = pytest.mark.redis
redis_server = _services.redis_server
moto_s3 = _services.moto_s3
cluster_factory = _cluster.cluster_factory


@pytest.fixture
def s3_proxy(moto_s3: MotoServer) -> Iterator[TcpProxy]:
    proxy = TcpProxy(moto_s3.port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.cut()


def _explain(gateway: Gateway, n: int) -> list[str]:
    ids = []
    for i in range(n):
        status, body = gateway.chat(content=f"s3 test {i}")
        assert status == 200 and body["explanation"]["state"] == "queued"
        ids.append(body["explanation"]["trace_id"])
    return ids


def test_s3_down_fails_persist_then_recovers(
    redis_server: RedisServer, moto_s3: MotoServer, s3_proxy: TcpProxy, cluster_factory: Any
) -> None:
    cluster: Cluster = cluster_factory(
        redis_server,
        moto_s3,
        s3_endpoint=f"http://127.0.0.1:{s3_proxy.port}",
        s3_options="max_attempts=1&connect_timeout=0.5&read_timeout=2",
    )
    gateway = cluster.gateway()
    metrics_url = f"http://127.0.0.1:{(port := free_port())}/metrics"
    cluster.explainer("--persist-retries", "2", "--persist-backoff-s", "0.05", metrics_port=port)
    before = _explain(gateway, 1)
    assert cluster.wait_terminal(before, timeout_s=30)[before[0]].state is TraceState.COMPLETE

    s3_proxy.cut()
    down = _explain(gateway, 2)
    records = cluster.wait_terminal(down, timeout_s=30)
    for trace_id in down:
        record = records[trace_id]
        assert record.state is TraceState.FAILED and record.error is not None
        assert record.error.startswith("persist:") and "unreachable" in record.error
        assert "gave up after 2 retries" in record.error
        status, body = gateway.request(f"/v1/traces/{trace_id}/graph")
        assert status == 410 and "persist" in body["error"]["message"]
    # The supervisor applies the workers' metric events each tick: poll, don't race it.
    wait_until(lambda: metric_value(metrics_url, "explainer_persist_retries_total") >= 4, timeout_s=10)
    wait_until(lambda: metric_value(metrics_url, "explainer_jobs_total", 'state="failed"') == 2, timeout_s=10)

    s3_proxy.restore()
    after = _explain(gateway, 2)
    assert {r.state for r in cluster.wait_terminal(after, timeout_s=30).values()} == {TraceState.COMPLETE}
    status, graph = gateway.request(f"/v1/traces/{after[0]}/graph")  # read back through the same proxy
    assert status == 200 and graph["metadata"]["trace_id"] == after[0]
    complete = 'state="complete"'
    wait_until(lambda: metric_value(metrics_url, "explainer_jobs_total", complete) == 3, timeout_s=10)
