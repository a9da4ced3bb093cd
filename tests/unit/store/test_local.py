"""The local-folder blob store and URL dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest

from hif.errors import BlobWriteError, ConfigError
from hif.store import open_blobs, open_queue, open_state, open_stores
from hif.store.base import graph_key
from hif.store.local import LocalBlobStore
from hif.store.settings import StoreSettings


def test_put_is_atomic_and_idempotent(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    key = graph_key("abcdef")
    assert blobs.get(key) is None and not blobs.exists(key)
    blobs.put(key, b"one")
    blobs.put(key, b"two")
    assert blobs.get(key) == b"two" and blobs.exists(key)
    leftovers = [p.name for p in (tmp_path / "graphs").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_put_refuses_escaping_keys(tmp_path: Path) -> None:
    with pytest.raises(BlobWriteError):
        LocalBlobStore(tmp_path).put("../evil", b"x")


def test_put_failure_is_blob_write_error(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    (tmp_path / "graphs").write_text("a file where a folder should be")
    with pytest.raises(BlobWriteError):
        blobs.put("graphs/ab/x.json", b"x")


def test_dispatch_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_blobs(f"file://{tmp_path}/b"), LocalBlobStore)
    assert isinstance(open_blobs(str(tmp_path / "c")), LocalBlobStore)
    with pytest.raises(ConfigError, match="queue"):
        open_queue("mysql://x")
    with pytest.raises(ConfigError, match="state"):
        open_state("mongodb://x")
    with pytest.raises(ConfigError, match="blobs"):
        open_blobs("gs://bucket")


def test_open_stores_embedded_defaults(tmp_path: Path) -> None:
    with open_stores(StoreSettings(data_dir=tmp_path)) as stores:
        assert stores.queue.depth() == 0
        assert stores.state.counts()["queued"] == 0
        stores.blobs.put("k.json", b"{}")
    assert (tmp_path / "hif.db").is_file() and (tmp_path / "blobs" / "k.json").is_file()
