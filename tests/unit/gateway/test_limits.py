"""Per-key token buckets: 429 with Retry-After for chats, ``rate_limited`` for explanations."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from hif.errors import StoreUnavailableError
from hif.gateway.auth import Key, KeyRing, Limit
from hif.gateway.limits import LocalBuckets, RateLimiter
from hif.store.base import TraceState
from tests.unit.gateway.fakes import FakeStores, async_test
from tests.unit.gateway.test_app import CHAT, call, make, started

CHAT_URL = "/v1/chat/completions"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@async_test
async def test_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock)
    assert [await buckets.take("k", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await buckets.take("k", 2.0, 3) == 0.5  # one token every 0.5 s
    clock.now += 0.25
    assert await buckets.take("k", 2.0, 3) == 0.25
    clock.now += 0.25
    assert await buckets.take("k", 2.0, 3) == 0.0
    clock.now += 100  # refills up to the burst, no further
    assert [await buckets.take("k", 2.0, 3) for _ in range(4)][-1] > 0
    assert await buckets.take("other", 2.0, 3) == 0.0  # buckets are per name


def ring() -> KeyRing:
    return KeyRing.from_tokens(
        {
            "sk-limited": Key("user", "alpha", key_id="aaaa", rpm=Limit(6.0, 2)),
            "sk-explain": Key("user", "beta", key_id="bbbb", explain_rpm=Limit(6.0, 1)),
            "sk-free": Key("user", "gamma", key_id="cccc"),
        }
    )


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@async_test
async def test_chat_over_rpm_is_429_with_retry_after_and_counted_by_key_id() -> None:
    app, reg = make(keys=ring())
    await started(app)
    for _ in range(2):
        assert (await call(app, "POST", CHAT_URL, CHAT, auth("sk-limited"))).status == 200
    refused = await call(app, "POST", CHAT_URL, {**CHAT, "stream": True}, auth("sk-limited"))
    assert refused.status == 429 and refused.headers["content-type"] == "application/json"
    assert 1 <= int(refused.headers["retry-after"]) <= 10  # 6/min: the next token within 10 s
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "sk-limited" not in refused.body.decode()
    assert (await call(app, "POST", CHAT_URL, CHAT, auth("sk-free"))).status == 200  # other keys unaffected
    assert (await call(app, "GET", "/healthz")).status == 200
    assert (await call(app, "GET", "/v1/featuresets", headers=auth("sk-limited"))).status == 200
    limited = reg.get_sample_value("gateway_rate_limited_total", {"key_id": "aaaa", "limit": "rpm"})
    assert limited == 1
    await app.shutdown()


@async_test
async def test_trace_reads_do_not_spend_rpm() -> None:
    app, _ = make(keys=ring())
    await started(app)
    reply = await call(app, "POST", CHAT_URL, {**CHAT, "explain": {}}, auth("sk-limited"))
    status_url = reply.json()["explanation"]["status_url"]
    for _ in range(5):
        assert (await call(app, "GET", status_url, headers=auth("sk-limited"))).status == 200
    assert (await call(app, "POST", CHAT_URL, CHAT, auth("sk-limited"))).status == 200
    await app.shutdown()


@async_test
async def test_explanation_over_explain_rpm_is_rate_limited_not_shed() -> None:
    stores = FakeStores.new()
    app, reg = make(stores, keys=ring())
    await started(app)
    first = await call(app, "POST", CHAT_URL, {**CHAT, "explain": {}}, auth("sk-explain"))
    second = await call(app, "POST", CHAT_URL, {**CHAT, "stream": True, "explain": {}}, auth("sk-explain"))
    assert first.status == second.status == 200
    assert first.json()["explanation"]["state"] == "queued"
    last = orjson.loads(second.events()[-2][6:])["explanation"]
    assert last["state"] == "rate_limited" and "explain_rpm of key bbbb" in last["reason"]
    assert (await call(app, "POST", CHAT_URL, CHAT, auth("sk-explain"))).status == 200  # chats unlimited
    status = await call(app, "GET", last["status_url"], headers=auth("sk-explain"))
    assert status.json()["state"] == "rate_limited"
    await app.shutdown()  # flushes the buffer to the store
    stored = stores.state.records[last["trace_id"]]
    assert stored.state is TraceState.RATE_LIMITED and [j.trace_id for j in stores.queue.jobs] == [
        first.json()["explanation"]["trace_id"]
    ]
    labels = {"outcome": "rate_limited", "granularity": "sentence", "tenant": "beta"}
    assert reg.get_sample_value("gateway_explanation_admissions_total", labels) == 1


class DownBuckets:
    async def take(self, name: str, per_second: float, burst: int) -> float:
        raise StoreUnavailableError("redis down")

    async def aclose(self) -> None: ...


@async_test
async def test_unreachable_shared_buckets_let_requests_through_and_count() -> None:
    reg = CollectorRegistry()
    limiter = RateLimiter(DownBuckets(), reg)
    who = ring().authenticate("Bearer sk-limited", None)
    for _ in range(5):
        await limiter.check_chat(who)
    assert reg.get_sample_value("gateway_rate_limit_errors_total") == 5


@async_test
async def test_openapi_lists_429_with_retry_after() -> None:
    app, _ = make()
    doc = (await call(app, "GET", "/openapi.json")).json()
    answer = doc["paths"][CHAT_URL]["post"]["responses"]["429"]
    assert "Retry-After" in answer["headers"]
    states = doc["components"]["schemas"]["TraceStatus"]["properties"]["state"]["enum"]
    assert "rate_limited" in states
