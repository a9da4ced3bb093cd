"""The shared ASGI server start-up: the lifespan helper and the server choice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hif.asgi_server import run_lifespan, serve


def test_lifespan_runs_hooks_in_order_and_answers_each_message() -> None:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    events: list[str] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        events.append(message["type"])
        sent.append(message)

    async def startup() -> None:
        events.append("startup-hook")

    async def shutdown() -> None:
        events.append("shutdown-hook")

    asyncio.run(run_lifespan(receive, send, startup=startup, shutdown=shutdown))
    assert events == [
        "startup-hook",
        "lifespan.startup.complete",
        "shutdown-hook",
        "lifespan.shutdown.complete",
    ]
    assert not inbox


def test_unknown_server_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="uvicorn, granian"):
        serve(object(), host="127.0.0.1", port=0, server="hypercorn")
