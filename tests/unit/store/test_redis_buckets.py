"""The shared token bucket in Redis: burst, refill on Redis's clock, wait times, idle expiry."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from hif.errors import StoreUnavailableError
from hif.store.redis_buckets import RedisBuckets, open_buckets
from tests.conftest import free_port
from tests.integration import _services
from tests.integration._services import RedisServer

redis_server = _services.redis_server


def test_burst_then_wait_then_refill(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        buckets = RedisBuckets(redis_server.url)
        try:
            taken = [await buckets.take("k", 5.0, 3) for _ in range(3)]
            assert taken == [0.0, 0.0, 0.0]
            wait_s = await buckets.take("k", 5.0, 3)
            assert 0.0 < wait_s <= 0.2  # one token every 0.2 s
            assert await buckets.take("other", 5.0, 3) == 0.0  # buckets are per name
            await asyncio.sleep(wait_s + 0.05)
            assert await buckets.take("k", 5.0, 3) == 0.0
        finally:
            await buckets.aclose()

    asyncio.run(scenario())
    client = redis.Redis.from_url(redis_server.url)
    ttl_ms = client.pttl("{hif}:bucket:k")
    assert 0 < ttl_ms <= 3 / 5.0 * 1000 + 1000  # forgotten once it would be full again
    client.close()


def test_unreachable_redis_is_store_unavailable_quickly() -> None:
    async def scenario() -> None:
        buckets = RedisBuckets(f"redis://:pw@127.0.0.1:{free_port()}/0")
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            await buckets.take("k", 1.0, 1)
        assert time.monotonic() - started < 2.0 and "pw" not in str(info.value)
        await buckets.aclose()

    asyncio.run(scenario())


def test_only_redis_state_urls_get_shared_buckets() -> None:
    assert open_buckets("sqlite:////tmp/hif.db") is None
    assert isinstance(open_buckets("redis://127.0.0.1:6379/0"), RedisBuckets)
