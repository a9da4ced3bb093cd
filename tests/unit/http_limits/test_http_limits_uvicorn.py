"""The limited httptools protocol driven through a fake transport on a real event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from hif.http_limits import HttpLimits
from hif.http_limits.uvicorn import LINGER_S, limited_protocol

FAST = HttpLimits(header_timeout_s=0.05, body_idle_timeout_s=0.05, max_header_bytes=1024, max_connections=2)
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n"


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes and whether it closed or half-closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.eof = False
        self.protocol: asyncio.Protocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed and self.protocol is not None:
            asyncio.get_event_loop().call_soon(self.protocol.connection_lost, None)
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Bench:
    """Connections to one protocol class sharing one server state, as uvicorn's server makes them."""

    def __init__(self, limits: HttpLimits) -> None:
        self.requests: list[dict[str, Any]] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            body, message = b"", {"more_body": True}
            while message.get("more_body"):
                message = await receive()
                body += message.get("body", b"")
            self.requests.append({"path": scope["path"], "body": body, "type": message["type"]})
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        self.config = Config(
            app, http=limited_protocol(limits), lifespan="off", access_log=False, log_config=None
        )
        self.config.load()
        self.state = ServerState()

    def connect(self) -> tuple[Any, FakeTransport]:
        proto = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.state, app_state={}
        )
        transport = FakeTransport()
        transport.protocol = proto
        proto.connection_made(transport)
        return proto, transport


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


def run(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    """Let the loop run its timers for ``seconds`` (timers due earlier fire first)."""
    loop.run_until_complete(asyncio.sleep(seconds))


def error_code(written: bytes) -> str:
    return orjson.loads(written.partition(b"\r\n\r\n")[2])["error"]["code"]


def test_request_in_one_read_arms_no_timer_and_is_served(loop: asyncio.AbstractEventLoop) -> None:
    bench = Bench(FAST)
    proto, transport = bench.connect()
    proto.data_received(HEAD + b"{}")
    assert proto.deadline is None
    run(loop, 0.1)
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    assert bench.requests == [{"path": "/v1/chat/completions", "body": b"{}", "type": "http.request"}]
    assert not transport.closed


def test_head_not_complete_by_its_deadline_gets_408_and_closes(loop: asyncio.AbstractEventLoop) -> None:
    proto, transport = Bench(FAST).connect()
    proto.data_received(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g")
    run(loop, 0.03)
    proto.data_received(b"w\r\nX-Slow: 1")  # bytes still trickling in do not extend the deadline
    run(loop, 0.1)
    assert transport.written.startswith(b"HTTP/1.1 408 ")
    assert error_code(transport.written) == "request_timeout"
    assert transport.closed


def test_body_that_stalls_gets_408_and_the_app_sees_a_disconnect(loop: asyncio.AbstractEventLoop) -> None:
    bench = Bench(FAST)
    proto, transport = bench.connect()
    proto.data_received(HEAD + b"{")
    run(loop, 0.2)
    assert transport.written.startswith(b"HTTP/1.1 408 ")
    assert transport.closed
    assert bench.requests == [{"path": "/v1/chat/completions", "body": b"{", "type": "http.disconnect"}]


def test_body_bytes_that_keep_coming_reset_the_idle_deadline(loop: asyncio.AbstractEventLoop) -> None:
    limits = HttpLimits(body_idle_timeout_s=0.08, max_connections=2)
    bench = Bench(limits)
    proto, transport = bench.connect()
    proto.data_received(b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\n")
    for piece in (b"a", b"b", b"c"):
        run(loop, 0.04)  # each gap is under the idle deadline, their sum is over it
        proto.data_received(piece)
    run(loop, 0.05)
    assert transport.written.startswith(b"HTTP/1.1 200 "), transport.written[:40]
    assert bench.requests[0]["body"] == b"abc"


def test_head_over_the_size_limit_in_one_read_gets_431(loop: asyncio.AbstractEventLoop) -> None:
    proto, transport = Bench(FAST).connect()
    proto.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert error_code(transport.written) == "request_header_fields_too_large"
    assert transport.eof and not transport.closed  # lingers so the client reads the answer
    proto.data_received(b"a" * 100_000)  # dropped, not parsed
    run(loop, LINGER_S + 0.1)
    assert transport.closed


def test_head_growing_over_the_limit_across_reads_gets_431(loop: asyncio.AbstractEventLoop) -> None:
    proto, transport = Bench(FAST).connect()
    proto.data_received(b"GET / HTTP/1.1\r\nX-Big: ")
    for _ in range(3):
        proto.data_received(b"a" * 400)
    assert transport.written.startswith(b"HTTP/1.1 431 ")


def test_connection_that_never_sends_falls_under_keep_alive(loop: asyncio.AbstractEventLoop) -> None:
    proto, transport = Bench(FAST).connect()
    assert proto.timeout_keep_alive_task is not None
    proto.timeout_keep_alive_task.cancel()
    proto.timeout_keep_alive_handler()
    assert transport.closed and transport.written == b""


def test_connections_over_the_cap_are_closed_and_logged(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    bench = Bench(FAST)
    kept = [bench.connect() for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="hif.http_limits.uvicorn"):
        _, refused = bench.connect()
    assert refused.closed and not any(t.closed for _, t in kept)
    assert "connection cap reached: 2 connections open (max_connections 2)" in caplog.text
    run(loop, 0.01)
    assert len(bench.state.connections) == 2
