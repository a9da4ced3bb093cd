"""Settings for where jobs, trace state and graphs live."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from hif.config import DEFAULT_DATA_DIR, option


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """Where jobs, trace state and graphs live. Empty URLs mean the embedded backends."""

    SECTION: typing.ClassVar[str] = "store"

    data_dir: Path = option(DEFAULT_DATA_DIR, help="folder for the embedded SQLite store and blobs")
    queue: str = option(
        "", help="job queue URL: sqlite:///path.db or redis://host:port/db (default: SQLite in data-dir)"
    )
    state: str = option(
        "", help="trace-state URL: sqlite:///path.db or redis://... (default: SQLite in data-dir)"
    )
    blobs: str = option(
        "", help="blob store: a folder path, file:///path or s3://bucket/prefix (default: data-dir/blobs)"
    )
    s3_endpoint_url: str | None = option(None, help="endpoint for S3-compatible stores (moto, MinIO)")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "hif.db"

    def queue_url(self) -> str:
        return self.queue or f"sqlite:///{self.sqlite_path}"

    def state_url(self) -> str:
        return self.state or f"sqlite:///{self.sqlite_path}"

    def blobs_url(self) -> str:
        return self.blobs or f"file://{self.data_dir / 'blobs'}"
