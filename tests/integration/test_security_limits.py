"""Per-key limits over real sockets: 429 + Retry-After on one gateway, and one shared limit for two
gateway replicas on Redis (per-replica buckets would let through twice as much)."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import redis

from hif.gateway.auth import token_digest
from hif.gateway.keys import add_key
from tests.integration import _services
from tests.integration._gateway_proc import CHAT, Proc, gateway
from tests.integration._services import RedisServer

redis_server = _services.redis_server
CHAT_URL = "/v1/chat/completions"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_one_gateway_answers_429_with_retry_after_and_rate_limits_explanations(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    chat_key = add_key(keys, role="user", tenant="alpha", rpm=6, burst=3)  # refill: 1 per 10 s
    explain_key = add_key(keys, role="user", tenant="beta", explain_rpm=1, explain_burst=1)
    with gateway(tmp_path, "--keys", str(keys)) as gw:
        statuses = [gw.request("POST", CHAT_URL, CHAT, bearer(chat_key))[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        status, headers, body = gw.request("POST", CHAT_URL, {**CHAT, "stream": True}, bearer(chat_key))
        assert status == 429 and headers["content-type"] == "application/json"  # no stream started
        assert 1 <= int(headers["retry-after"]) <= 10
        assert orjson.loads(body)["error"]["code"] == "rate_limit_exceeded"
        assert gw.request("GET", "/v1/featuresets", headers=bearer(chat_key))[0] == 200
        first = orjson.loads(gw.request("POST", CHAT_URL, {**CHAT, "explain": {}}, bearer(explain_key))[2])
        second = orjson.loads(gw.request("POST", CHAT_URL, {**CHAT, "explain": {}}, bearer(explain_key))[2])
        assert first["explanation"]["state"] == "queued"
        assert second["choices"] and second["explanation"]["state"] == "rate_limited"
        status_body = gw.request("GET", second["explanation"]["status_url"], headers=bearer(explain_key))[2]
        assert orjson.loads(status_body)["state"] == "rate_limited"


@contextlib.contextmanager
def replicas(tmp: Path, url: str, keys: Path) -> Iterator[tuple[Proc, Proc]]:
    shared = ("--queue", url, "--state", url, "--keys", str(keys))
    with gateway(tmp / "a", *shared) as a, gateway(tmp / "b", *shared) as b:
        yield a, b


def test_two_replicas_on_redis_share_one_limit(tmp_path: Path, redis_server: RedisServer) -> None:
    burst, attempts = 30, 90
    keys = tmp_path / "keys.toml"
    token = add_key(keys, role="user", tenant="alpha", rpm=6, burst=burst)  # refill: 1 per 10 s
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with replicas(tmp_path, redis_server.url, keys) as (a, b):

        def send(i: int) -> tuple[int, str | None]:
            status, headers, _ = (a if i % 2 else b).request("POST", CHAT_URL, CHAT, bearer(token))
            return status, headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, range(attempts)))
    allowed = sum(1 for status, _ in results if status == 200)
    refused = [retry for status, retry in results if status == 429]
    assert allowed + len(refused) == attempts
    # One bucket for both: the burst (plus at most a token or two of refill), within 10%. Separate
    # per-replica buckets would have let through about twice the burst.
    assert abs(allowed - burst) <= burst * 0.1, allowed
    assert all(retry is not None and 1 <= int(retry) <= 10 for retry in refused)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert client.exists(f"{{hif}}:bucket:{token_digest(token)[:12]}:rpm") == 1
    client.close()
