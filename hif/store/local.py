"""The embedded blob store: one file per key under a local folder.

Writes are atomic (a temp file in the same folder, fsync, rename, fsync of the folder) so a
reader never sees half a graph and a crash leaves either the old object or the new one. Keys are
stable per trace, so a retried write simply replaces the same file: ``put`` is idempotent.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from hif.errors import BlobWriteError, ConfigError, StoreError


def path_from_url(url: str) -> Path:
    """``file:///abs/folder`` or a bare path -> a Path."""
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    if not url:
        raise ConfigError("blobs", "blob store path is empty")
    return Path(os.path.expanduser(url))


class LocalBlobStore:
    """:class:`~hif.store.base.BlobStore` on a local folder."""

    def __init__(self, url_or_path: str | Path) -> None:
        self.root = url_or_path if isinstance(url_or_path, Path) else path_from_url(url_or_path)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create blob folder {self.root}: {exc}") from exc

    def _path(self, key: str) -> Path:
        # Keys come from graph_key(); refuse anything that would escape the root.
        parts = Path(key).parts
        if not parts or Path(key).is_absolute() or ".." in parts:
            raise BlobWriteError(f"invalid blob key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise BlobWriteError(f"cannot write blob {key!r} under {self.root}: {exc}", key=key) from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def check(self) -> None:
        """Write, read back and remove a probe file: the folder exists and is writable."""
        probe = f".hif-check-{uuid.uuid4().hex}"
        try:
            self.put(probe, b"ok")
            if self.get(probe) != b"ok":
                raise StoreError(f"blob folder {self.root} did not return what was written")
        except BlobWriteError as exc:
            raise StoreError(f"blob folder {self.root} is not writable: {exc.__cause__ or exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                (self.root / probe).unlink()

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own file."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
