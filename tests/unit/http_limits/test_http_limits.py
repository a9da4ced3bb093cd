"""The limits as settings, the granian mapping and the body idle wrapper granian relies on."""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import orjson
import pytest

from hif.config import build
from hif.errors import ConfigError
from hif.gateway.settings import GatewaySettings
from hif.http_limits import HttpLimits, raise_fd_limit
from hif.http_limits.granian import BodyIdleDeadline, http1_settings, http2_settings, server_options


def test_limits_come_from_flags_env_and_file() -> None:
    env = {"HIF_HEADER_TIMEOUT_S": "2.5", "HIF_MAX_HEADER_BYTES": "1024"}
    file = {"gateway": {"max_connections": 7, "body_idle_timeout_s": 3}}
    limits = build(GatewaySettings, cli={"max_connections": 9}, env=env, file=file).http_limits()
    assert limits == HttpLimits(
        header_timeout_s=2.5, body_idle_timeout_s=3.0, max_header_bytes=1024, max_connections=9
    )
    assert GatewaySettings().http_limits() == HttpLimits()


@pytest.mark.parametrize(
    "key", ["header_timeout_s", "body_idle_timeout_s", "max_header_bytes", "max_connections"]
)
def test_a_limit_of_zero_fails_at_start_up_naming_its_key(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build(GatewaySettings, env={}, **{key: 0})


def test_granian_settings_carry_the_header_deadline_and_size() -> None:
    limits = HttpLimits(header_timeout_s=1.5, max_header_bytes=65536)
    assert (http1_settings(limits).header_read_timeout, http1_settings(limits).max_buffer_size) == (
        1500,
        65536,
    )
    assert http2_settings(limits).max_headers_size == 65536
    assert http1_settings(HttpLimits(max_header_bytes=100)).max_buffer_size == 8192  # hyper's floor


def test_granian_server_options_wrap_the_app_only_with_limits() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    assert server_options(app, None) == (app, {})
    wrapped, options = server_options(app, HttpLimits(body_idle_timeout_s=3))
    assert isinstance(wrapped, BodyIdleDeadline) and wrapped.app is app and wrapped.idle_timeout_s == 3
    assert set(options) == {"http1_settings", "http2_settings"}


def test_fd_limit_is_raised_towards_max_connections_within_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        got = raise_fd_limit(HttpLimits(max_connections=1000))
        assert got == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert got == (1512 if hard == resource.RLIM_INFINITY else min(1512, hard))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Exchange:
    """An ASGI app that reads the whole body then answers, and the messages it sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.seen: list[str] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message: dict[str, Any] = {"more_body": True}
        while message.get("more_body"):
            message = await receive()
            self.seen.append(message["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def test_a_stalled_body_gets_408_and_the_app_sees_a_disconnect() -> None:
    exchange = Exchange()
    pieces = [{"type": "http.request", "body": b"{", "more_body": True}]

    async def receive() -> dict[str, Any]:
        if pieces:
            return pieces.pop()
        await asyncio.Event().wait()  # the client never sends the rest
        raise AssertionError("unreachable")

    wrapped = BodyIdleDeadline(exchange.app, idle_timeout_s=0.05)
    asyncio.run(wrapped({"type": "http"}, receive, exchange.send))
    assert exchange.seen == ["http.request", "http.disconnect"]
    assert [m.get("status") for m in exchange.sent] == [408, None]  # the app's late 200 was dropped
    assert (b"connection", b"close") in exchange.sent[0]["headers"]
    assert orjson.loads(exchange.sent[1]["body"])["error"]["code"] == "request_timeout"


def test_a_body_in_time_passes_through() -> None:
    exchange = Exchange()
    pieces = [
        {"type": "http.request", "body": b"}", "more_body": False},
        {"type": "http.request", "body": b"{"},
    ]
    pieces[1]["more_body"] = True

    async def receive() -> dict[str, Any]:
        return pieces.pop()

    asyncio.run(BodyIdleDeadline(exchange.app, idle_timeout_s=5)({"type": "http"}, receive, exchange.send))
    assert exchange.seen == ["http.request", "http.request"]
    assert [m.get("status") for m in exchange.sent] == [200, None]
