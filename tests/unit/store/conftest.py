"""The store contract's backends: every test taking ``url`` runs once against each of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration._services import RedisServer


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty backend; the URL is all a process needs to join it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hif.db'}"
        return
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
