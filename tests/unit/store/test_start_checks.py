"""Start-up checks (``open_stores`` probes every store) and Redis counts derived from live data."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hif.errors import StoreError, StoreUnavailableError
from hif.store import open_blobs, open_stores
from hif.store.base import TraceState
from hif.store.redis import RedisTraceStore
from hif.store.settings import StoreSettings
from tests._records import make_record
from tests.conftest import free_port, wait_until
from tests.integration import _services
from tests.integration._services import MotoServer, RedisServer

redis_server = _services.redis_server
moto_s3 = _services.moto_s3


def test_embedded_stores_pass_their_check(tmp_path: Path) -> None:
    with open_stores(StoreSettings(data_dir=tmp_path / "data")) as stores:
        stores.check()
        assert not list((tmp_path / "data" / "blobs").glob(".hif-check-*"))  # the probe is removed


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_blob_folder_fails_the_check(tmp_path: Path) -> None:
    folder = tmp_path / "blobs"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=f"blob folder {folder} is not writable"):
            open_blobs(str(folder)).check()
    finally:
        folder.chmod(0o700)


def test_unreachable_redis_fails_open_stores_naming_the_url_without_password(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0?socket_connect_timeout=0.5"
    settings = StoreSettings(data_dir=tmp_path, queue=url, state=url)
    with pytest.raises(StoreUnavailableError) as info:
        open_stores(settings)
    text = str(info.value)
    assert "127.0.0.1" in text and "start-up check" in text and "hunter2" not in text
    assert "\n" not in text


def test_missing_bucket_fails_open_stores(tmp_path: Path, moto_s3: MotoServer) -> None:
    settings = StoreSettings(
        data_dir=tmp_path, blobs="s3://no-such-bucket-hif/graphs", s3_endpoint_url=moto_s3.endpoint_url
    )
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-hif' does not exist"):
        open_stores(settings)
    open_stores(settings, check=False).close()  # the check is what fails, not the construction


def test_redis_counts_drop_traces_whose_hash_expired(redis_server: RedisServer) -> None:
    store = RedisTraceStore(redis_server.url + "?retention_s=0.3")
    store.create([make_record("gone", expires_at=time.time()), make_record("kept")])
    store.create([make_record("shed", state=TraceState.SHED, expires_at=time.time())])
    store.transition("kept", from_states=[TraceState.QUEUED], to_state=TraceState.RUNNING)
    assert store.counts()["queued"] == 1 and store.counts()["shed"] == 1
    wait_until(lambda: store.get("gone") is None and store.get("shed") is None, timeout_s=5)
    counts = store.counts()
    assert (counts["queued"], counts["shed"], counts["running"]) == (0, 0, 1)
    assert set(counts) == {str(s) for s in TraceState}
    store.close()


def test_redis_counts_follow_transitions_and_expiry(redis_server: RedisServer) -> None:
    store = RedisTraceStore(redis_server.url)
    store.create([make_record("a", expires_at=time.time() - 1), make_record("b")])
    store.create([make_record("c", state=TraceState.RATE_LIMITED)])
    assert store.expire_due() == ["a"]
    store.transition("b", from_states=[TraceState.QUEUED], to_state=TraceState.COMPLETE)
    counts = store.counts()
    assert (counts["expired"], counts["complete"], counts["rate_limited"], counts["queued"]) == (1, 1, 1, 0)
    store.close()
