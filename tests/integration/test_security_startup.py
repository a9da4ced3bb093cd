"""Fail fast: a component whose store cannot be used exits 2 at start-up with one line naming it.

Exit status 2 is a permanent start-up failure (a supervisor should not restart it in a loop); the
line names the store URL with any password masked, and what failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration import _services
from tests.integration._procs import hif_cmd, http_ready, running
from tests.integration._services import AWS_TEST_ENV, MotoServer

moto_s3 = _services.moto_s3
RUN_TIMEOUT_S = 30


def start_up(
    tmp: Path, component: str, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    ports = (
        ["--port", str(free_port()), "--metrics-port", "0"]
        if component == "gateway"
        else ["--explainer-metrics-port", "0"]
    )
    argv = hif_cmd(component, *ports, "--data-dir", str(tmp / "data"), *flags)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env={**os.environ, **(env or {})}
    )


def assert_one_line_exit_2(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("hif: "), done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


@pytest.mark.parametrize("component", ["gateway", "explainer"])
def test_unreachable_redis_exits_2_naming_it_without_the_password(tmp_path: Path, component: str) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    done = start_up(tmp_path, component, "--queue", url, "--state", url)
    assert_one_line_exit_2(done, "redis://127.0.0.1:", "Connection refused", "start-up check")
    assert "hunter2" not in done.stderr


def test_missing_bucket_exits_2(tmp_path: Path, moto_s3: MotoServer) -> None:
    done = start_up(
        tmp_path,
        "gateway",
        "--blobs",
        "s3://hif-missing-bucket/graphs",
        "--s3-endpoint-url",
        moto_s3.endpoint_url,
        env=AWS_TEST_ENV,
    )
    assert_one_line_exit_2(done, "s3://hif-missing-bucket/graphs/", "does not exist")


@pytest.fixture
def authenticating_s3(tmp_path: Path) -> Iterator[str]:
    """A moto S3 server that checks credentials (moto accepts any unless told otherwise)."""
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    ready = http_ready(f"http://127.0.0.1:{port}/moto-api/")
    with running(cmd, name="moto-auth", log_dir=tmp_path, ready=ready, timeout_s=20, env=env):
        yield f"http://127.0.0.1:{port}"


def test_wrong_credentials_exit_2(tmp_path: Path, authenticating_s3: str) -> None:
    wrong = {**AWS_TEST_ENV, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG", "AWS_SECRET_ACCESS_KEY": "s3cr3t-x"}
    done = start_up(
        tmp_path, "gateway", "--blobs", "s3://graphs/x", "--s3-endpoint-url", authenticating_s3, env=wrong
    )
    assert_one_line_exit_2(done, "s3://graphs/x/", "access denied", "wrong credentials")
    assert "s3cr3t-x" not in done.stderr
