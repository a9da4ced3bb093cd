"""Storage backends behind small interfaces (see :mod:`hif.store.base`).

URLs pick the backend, and backends are imported lazily so the embedded path never imports
``redis`` or ``boto3``::

    sqlite:///rel.db, sqlite:////abs.db  -> hif.store.sqlite  (queue and trace state)
    redis://host:port/db                 -> hif.store.redis   (queue and trace state)
    file:///abs/folder or a bare path    -> hif.store.local   (blobs)
    s3://bucket/prefix                   -> hif.store.s3      (blobs)

>>> from pathlib import Path
>>> from hif.store.settings import StoreSettings
>>> stores = open_stores(StoreSettings(data_dir=Path("/tmp/hif-doctest")))
>>> stores.queue.depth() >= 0
True
>>> stores.close()
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from hif.errors import ConfigError, StoreError
from hif.store.base import BlobStore, JobQueue, TraceStore
from hif.store.settings import StoreSettings


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _construct(module: str, name: str, *args: Any, **kw: Any) -> Any:
    cls = getattr(importlib.import_module(module), name)
    return cls(*args, **kw)


def open_queue(url: str, **kw: Any) -> JobQueue:
    """The job queue named by ``url`` (``sqlite:///...`` or ``redis://...``)."""
    scheme = _scheme(url)
    if scheme == "sqlite":
        return _construct("hif.store.sqlite", "SqliteJobQueue", url, **kw)  # type: ignore[no-any-return]
    if scheme in ("redis", "rediss"):
        return _construct("hif.store.redis", "RedisJobQueue", url, **kw)  # type: ignore[no-any-return]
    raise ConfigError(
        "queue", f"unsupported job queue URL {url!r}: use sqlite:///path.db or redis://host:port/db"
    )


def open_state(url: str, **kw: Any) -> TraceStore:
    """The trace-state store named by ``url`` (``sqlite:///...`` or ``redis://...``)."""
    scheme = _scheme(url)
    if scheme == "sqlite":
        return _construct("hif.store.sqlite", "SqliteTraceStore", url, **kw)  # type: ignore[no-any-return]
    if scheme in ("redis", "rediss"):
        return _construct("hif.store.redis", "RedisTraceStore", url, **kw)  # type: ignore[no-any-return]
    raise ConfigError(
        "state", f"unsupported trace-state URL {url!r}: use sqlite:///path.db or redis://host:port/db"
    )


def open_blobs(url: str, *, s3_endpoint_url: str | None = None) -> BlobStore:
    """The blob store named by ``url`` (a folder, ``file:///...`` or ``s3://bucket/prefix``)."""
    scheme = _scheme(url)
    if scheme in ("", "file"):
        return _construct("hif.store.local", "LocalBlobStore", url)  # type: ignore[no-any-return]
    if scheme == "s3":
        return _construct("hif.store.s3", "S3BlobStore", url, endpoint_url=s3_endpoint_url)  # type: ignore[no-any-return]
    raise ConfigError(
        "blobs", f"unsupported blob store URL {url!r}: use a folder, file:///path or s3://bucket/prefix"
    )


class Stores:
    """The three stores one process uses; ``check()`` proves them usable, ``close()`` releases them."""

    def __init__(self, queue: JobQueue, state: TraceStore, blobs: BlobStore) -> None:
        self.queue = queue
        self.state = state
        self.blobs = blobs

    def check(self) -> None:
        """Raise StoreError naming the first store that cannot be used (its URL, credentials masked)."""
        for store in (self.queue, self.state, self.blobs):
            store.check()

    def close(self) -> None:
        for store in (self.queue, self.state, self.blobs):
            with contextlib.suppress(Exception):  # closing is best effort; each backend logs its own
                store.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_stores(settings: StoreSettings, *, check: bool = True) -> Stores:
    """Open the queue, trace state and blobs ``settings`` name (embedded SQLite + folder by default).

    With ``check`` (the default: every component opens its stores at start-up) each store is
    probed once, so a wrong bucket, bad credentials or an unreachable Redis fail now, as one
    StoreError naming the store, instead of when the first graph is persisted.
    """
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create data dir {settings.data_dir}: {exc}") from exc
    opened: list[Any] = []
    try:
        opened.append(open_queue(settings.queue_url()))
        opened.append(open_state(settings.state_url()))
        opened.append(open_blobs(settings.blobs_url(), s3_endpoint_url=settings.s3_endpoint_url))
        stores = Stores(*opened)
        if check:
            stores.check()
    except BaseException:
        for store in opened:
            with contextlib.suppress(Exception):
                store.close()
        raise
    return stores


__all__ = [
    "BlobStore",
    "JobQueue",
    "Stores",
    "TraceStore",
    "open_blobs",
    "open_queue",
    "open_state",
    "open_stores",
]
