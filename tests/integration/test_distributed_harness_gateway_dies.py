"""The load harness when the gateway dies mid-run: failures are recorded per request, the run ends
on its own, and summary.json is still written (a crash of the target is a result, not a harness crash)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.integration import _cluster, _services
from tests.integration._cluster import Cluster
from tests.integration._procs import running
from tests.integration._services import MotoServer, RedisServer

pytestmark = pytest.mark.redis
redis_server = _services.redis_server
moto_s3 = _services.moto_s3
cluster_factory = _cluster.cluster_factory


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_load_runner_survives_the_gateway_dying(
    tmp_path: Path, redis_server: RedisServer, moto_s3: MotoServer, cluster_factory: Any
) -> None:
    cluster: Cluster = cluster_factory(redis_server, moto_s3)
    gateway = cluster.gateway()
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "tests.load.load_runner", "--base-url", gateway.url,
           "--concurrency", "4", "--duration-seconds", "5", "--attach-rate", "0.5", "--features", "fake-fs",
           "--timeout-seconds", "2", "--poll-deadline-seconds", "2", "--drain-seconds", "3",
           "--rps-limit", "100", "--live", "off", "--results-dir", str(results)]  # fmt: skip
    with running(cmd, name="load_runner", log_dir=tmp_path, split_output=True) as runner:
        chat_file = results / "chat_results.jsonl"
        wait_until(lambda: len(_lines(chat_file)) >= 20 or not runner.alive(), timeout_s=30)
        gateway.proc.kill_group()  # kill -9 mid-run
        out, err = runner.communicate(timeout_s=60)

    assert runner.returncode in (0, 1, 3), err  # finished; not a crash (2 would be flags/pre-flight)
    summary = json.loads((results / "summary.json").read_text())
    chats = _lines(results / "chat_results.jsonl")
    ok = [c for c in chats if c["status"] == 200]
    failed = [c for c in chats if c["error_class"] in ("connect", "timeout", "protocol", "dropped")]
    assert ok and failed, {c["error_class"] for c in chats}
    assert all(c["error"] for c in failed)  # each failure says what happened
    assert summary["chat"]["requests"] == len(chats)
    assert summary["chat"]["error_rate"] > 0
    assert json.loads(out.strip().splitlines()[-1])["requests"] == len(chats)  # the one-line summary
