"""Distributed mode end to end: store URLs from flags/env/file, a gateway and an explainer on Redis + S3,
and one backpressure signal shared by every gateway replica."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pytest

from hif.config import add_options, build
from hif.explainer import graphfile
from hif.store import open_stores
from hif.store.base import BackpressureLevel, BackpressureSignal, TraceState
from hif.store.redis import RedisJobQueue, RedisTraceStore
from hif.store.s3 import S3BlobStore
from hif.store.settings import StoreSettings
from tests.conftest import wait_until
from tests.integration import _cluster, _services
from tests.integration._cluster import Cluster
from tests.integration._services import MotoServer, RedisServer

pytestmark = pytest.mark.redis
redis_server = _services.redis_server
moto_s3 = _services.moto_s3
cluster_factory = _cluster.cluster_factory


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(parser, StoreSettings)
    return parser.parse_args(list(argv))


def test_store_urls_from_flags_env_and_file(
    tmp_path: Path, redis_server: RedisServer, moto_s3: MotoServer
) -> None:
    bucket = moto_s3.create_bucket()
    args = _cli(
        "--queue", redis_server.url, "--blobs", f"s3://{bucket}/p", "--s3-endpoint-url", moto_s3.endpoint_url
    )
    config = tmp_path / "hif.toml"
    config.write_text(
        f'[store]\nstate = "{redis_server.url}?prefix=from-file"\nqueue = "sqlite:///ignored.db"\n'
    )
    settings = build(StoreSettings, cli=args, env={"HIF_DATA_DIR": str(tmp_path / "data")}, file=config)
    assert settings.queue == redis_server.url  # the flag beats the file
    assert settings.state.endswith("prefix=from-file") and settings.data_dir == tmp_path / "data"
    with open_stores(settings) as stores:
        assert isinstance(stores.queue, RedisJobQueue) and isinstance(stores.state, RedisTraceStore)
        assert isinstance(stores.blobs, S3BlobStore) and stores.blobs.endpoint_url == moto_s3.endpoint_url
        stores.blobs.put("probe.json", b"{}")
        assert stores.blobs.get("probe.json") == b"{}" and stores.queue.depth() == 0
    env_only = build(StoreSettings, env={"HIF_QUEUE": redis_server.url, "HIF_S3_ENDPOINT_URL": "http://x:1"})
    assert (env_only.queue_url(), env_only.s3_endpoint_url) == (redis_server.url, "http://x:1")


def _explanation(reply: tuple[int, Any]) -> dict[str, Any]:
    status, body = reply
    assert status == 200, body
    return dict(body["explanation"])


def test_gateway_and_explainer_share_redis_and_s3(
    redis_server: RedisServer, moto_s3: MotoServer, cluster_factory: Any
) -> None:
    cluster: Cluster = cluster_factory(redis_server, moto_s3)
    gateway = cluster.gateway()
    cluster.explainer()
    trace_ids = [_explanation(gateway.chat(content=f"question {i}"))["trace_id"] for i in range(3)]
    records = cluster.wait_terminal(trace_ids, timeout_s=30)
    assert {r.state for r in records.values()} == {TraceState.COMPLETE}
    for trace_id, record in records.items():
        status, graph = gateway.request(f"/v1/traces/{trace_id}/graph")
        assert status == 200 and graph["metadata"]["trace_id"] == trace_id
        stored = cluster.blobs().get(str(record.graph_key))
        assert stored is not None and json.loads(graphfile.decode(stored)) == graph  # in S3, gzipped
    assert cluster.queue.depth() == 0 and cluster.state.counts()["complete"] == 3


def test_every_gateway_replica_sheds_on_the_shared_signal(
    redis_server: RedisServer, moto_s3: MotoServer, cluster_factory: Any
) -> None:
    cluster: Cluster = cluster_factory(redis_server, moto_s3)
    replicas = [cluster.gateway("--backpressure-refresh-s", "0.05") for _ in range(2)]
    hard = BackpressureSignal(level=BackpressureLevel.HARD, reason="queue lag 9s", updated_at=time.time())
    cluster.state.publish_backpressure(hard)

    def all_shed() -> bool:
        cluster.state.publish_backpressure(
            BackpressureSignal(level=hard.level, reason=hard.reason, updated_at=time.time())
        )  # keep it fresh
        return all(_explanation(gw.chat())["state"] == "shed" for gw in replicas)

    wait_until(all_shed, timeout_s=10, interval_s=0.1)
    shed = _explanation(replicas[1].chat())
    assert "backpressure hard" in shed["reason"]
    cluster.state.publish_backpressure(
        BackpressureSignal(level=BackpressureLevel.NONE, reason="ok", updated_at=time.time())
    )
    wait_until(lambda: all(_explanation(gw.chat())["state"] == "queued" for gw in replicas), timeout_s=10)
