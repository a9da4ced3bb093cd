"""One capacity search against a scripted target, for the unit and integration capacity tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hif.harness.capacity.run import run_capacity
from hif.harness.capacity.settings import CapacitySettings
from hif.harness.client import new_event_loop
from hif.harness.target import TargetScript, TargetServer


def search_target(script: TargetScript, results_dir: Path, *, timeout_s: float, **kw: Any) -> dict[str, Any]:
    """Serve ``script``, run ``hif capacity`` against it with ``kw`` as settings and return the
    capacity.json document. Metrics scraping is off: the target is neither gateway nor explainer,
    so there is no queue or backpressure to wait for and a short idle timeout is enough."""

    async def go() -> dict[str, Any]:
        server = TargetServer(script)
        await server.start()
        try:
            settings = CapacitySettings(
                base_url=server.url,
                idle_timeout_seconds=1.0,
                metrics_url_gateway="off",
                metrics_url_explainer="off",
                results_dir=results_dir,
                **kw,
            )
            return await run_capacity(settings)
        finally:
            await server.close()

    loop = new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(go(), timeout_s))
    finally:
        loop.close()
