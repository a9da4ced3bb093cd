"""Token buckets shared by every gateway replica, in Redis (per-key limits in distributed mode).

Each bucket is one small hash (tokens, last refill) that a Lua script refills and takes from
atomically, on Redis's clock, so N replicas enforce one limit for their sum instead of N limits
(a per-replica limit multiplies with the replica count). Idle buckets expire once they would be
full again. The client is asyncio (the check runs on the gateway's request path) with a short
timeout: the caller lets a request through when Redis cannot answer in time.
"""

from __future__ import annotations

import math
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hif.errors import StoreUnavailableError
from hif.store import _redis_lua as lua
from hif.store._redis_client import parse_url

TIMEOUT_S = 0.25  # a limit check may add this much at worst before failing open


class RedisBuckets:
    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self._opts = parse_url(url, key="state")
        self._client: Any = aioredis.Redis.from_url(
            self._opts.url,
            decode_responses=True,
            socket_timeout=min(timeout_s, self._opts.socket_timeout_s),
            socket_connect_timeout=min(timeout_s, self._opts.connect_timeout_s),
        )
        self._script = self._client.register_script(lua.TAKE_TOKENS)

    async def take(self, name: str, per_second: float, burst: int) -> float:
        idle_ms = math.ceil(burst / per_second * 1000) + 1000  # refilled to full by then: forget it
        try:
            ok, wait_ms = await self._script(
                keys=[self._opts.key("bucket", name)], args=[repr(per_second), burst, 1, idle_ms]
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(
                f"Redis unavailable for rate limits: {type(exc).__name__}: {exc}", store=self._opts.safe_url
            ) from exc
        return 0.0 if int(ok) else max(int(wait_ms), 1) / 1000.0

    async def aclose(self) -> None:
        await self._client.aclose()


def open_buckets(url: str) -> RedisBuckets | None:
    """Shared buckets when ``url`` (the trace-state URL) is Redis; None means per-process buckets."""
    return RedisBuckets(url) if url.startswith(("redis://", "rediss://", "unix://")) else None
