"""Per-key limits: token buckets for chat requests (``rpm``) and attached explanations (``explain_rpm``).

A key over ``rpm`` gets 429 with ``Retry-After`` (before a stream starts: the check runs before
the upstream is called). An explanation over ``explain_rpm`` does not fail the chat: the chat is
answered and its ``explanation.state`` is ``rate_limited``, a state of its own, so throttling a
tenant never reads as sidecar overload (``shed``).

Buckets live in this process (:class:`LocalBuckets`) or, in distributed mode, in Redis
(:class:`hif.store.redis_buckets.RedisBuckets`), where every gateway replica takes from the same
bucket and the limit holds for their sum. If the shared bucket cannot be reached the request is
let through (and counted): a Redis outage must not take the chat lane down with it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from hif.errors import RateLimitError, StoreError
from hif.gateway.auth import Limit, Principal
from hif.metrics import TenantLabels

log = logging.getLogger(__name__)
CHAT_LIMIT, EXPLAIN_LIMIT = "rpm", "explain_rpm"


class KeyRateLimitError(RateLimitError):
    """429 for one key; ``retry_after_s`` becomes the ``Retry-After`` header."""

    def __init__(self, message: str, *, retry_after_s: float, key_id: str) -> None:
        super().__init__(message, key_id=key_id)
        self.retry_after_s = retry_after_s


class TokenBuckets(Protocol):
    async def take(self, name: str, per_second: float, burst: int) -> float:
        """Take one token from bucket ``name`` (refilled at ``per_second``, holding ``burst``):
        0.0 when taken, else the seconds until one is there."""

    async def aclose(self) -> None: ...


class LocalBuckets:
    """Buckets in this process: right for one gateway (the embedded system)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    async def take(self, name: str, per_second: float, burst: int) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(name, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - at) * per_second)
        if tokens >= 1.0:
            self._buckets[name] = (tokens - 1.0, now)
            return 0.0
        self._buckets[name] = (tokens, now)
        return (1.0 - tokens) / per_second

    async def aclose(self) -> None:
        """Nothing to release."""


class RateLimiter:
    """Applies a principal's limits; counts refusals by key id (never the token), bounded in labels."""

    def __init__(self, buckets: TokenBuckets, registry: CollectorRegistry, max_key_labels: int = 20) -> None:
        self.buckets = buckets
        self._labels = TenantLabels(max_key_labels)
        self._limited = Counter(
            "gateway_rate_limited_total",
            "Requests over a per-key limit, by key id (a hash prefix) and limit (rpm, explain_rpm)",
            ["key_id", "limit"],
            registry=registry,
        )
        self._failing = False
        self._errors = Counter(
            "gateway_rate_limit_errors_total",
            "Limit checks that could not reach the shared buckets (the request was let through)",
            registry=registry,
        )

    async def check_chat(self, who: Principal) -> None:
        """Raise KeyRateLimitError (429) when the key's ``rpm`` bucket is empty."""
        key = who.key
        if key is None or key.rpm is None:
            return
        wait_s = await self._take(f"{key.key_id}:{CHAT_LIMIT}", key.rpm)
        if wait_s > 0:
            self._limited.labels(self._labels.label(key.key_id), CHAT_LIMIT).inc()
            raise KeyRateLimitError(
                f"rate limit reached for key {key.key_id}: {_describe(key.rpm)} chat requests; "
                f"retry in {math.ceil(wait_s)} s",
                retry_after_s=wait_s,
                key_id=key.key_id,
            )

    async def check_explain(self, who: Principal) -> str | None:
        """None when the explanation may go ahead; else why not (the trace's reason)."""
        key = who.key
        if key is None or key.explain_rpm is None:
            return None
        wait_s = await self._take(f"{key.key_id}:{EXPLAIN_LIMIT}", key.explain_rpm)
        if wait_s <= 0:
            return None
        self._limited.labels(self._labels.label(key.key_id), EXPLAIN_LIMIT).inc()
        limit = _describe(key.explain_rpm)
        return f"explain_rpm of key {key.key_id} reached ({limit}); retry in {wait_s:.1f} s"

    async def _take(self, name: str, limit: Limit) -> float:
        try:
            wait_s = await self.buckets.take(name, limit.per_second, limit.burst)
        except StoreError as exc:
            self._errors.inc()
            if not self._failing:  # once per outage, not once per request
                log.warning("per-key limits not checked while the buckets are unreachable: %s", exc)
            self._failing = True
            return 0.0
        if self._failing:
            log.warning("per-key limit buckets reachable again")
            self._failing = False
        return wait_s

    async def aclose(self) -> None:
        await self.buckets.aclose()


def _describe(limit: Limit) -> str:
    return f"{limit.per_minute:g}/min, burst {limit.burst}"
