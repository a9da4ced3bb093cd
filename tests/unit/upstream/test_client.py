"""The OpenAI-compatible HTTP upstream against scripted loopback servers (the transport seam)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from hif.errors import (
    BadRequestError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from hif.upstream.client import OpenAIUpstream
from tests.conftest import free_port
from tests.unit.gateway.fakes import async_test

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}],
}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler, self.connections, self.requests = handler, 0, []  # type: ignore[var-annotated]

    async def __aenter__(self) -> str:
        self.port = free_port()

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", self.port)
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()


def json_server(status: int, payload: Any, requests: list[tuple[bytes, bytes]] | None = None) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            req = await read_request(reader)
            if requests is not None:
                requests.append(req)
            writer.write(response(status, orjson.dumps(payload)))
            await writer.drain()

    return handler


@async_test
async def test_complete_reuses_one_keepalive_connection_and_sends_key() -> None:
    requests: list[tuple[bytes, bytes]] = []
    server = Server(json_server(200, ANSWER, requests))
    async with server as url:
        up = OpenAIUpstream(url, api_key="sk-up")
        for _ in range(3):
            assert (await up.complete(BODY))["choices"][0]["message"]["content"] == "Hello."
        await up.aclose()
    assert server.connections == 1
    head, body = requests[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1") and b"authorization: Bearer sk-up" in head
    assert orjson.loads(body)["stream"] is False


@async_test
async def test_stream_parses_chunked_sse() -> None:
    events = [
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n',
        b"data: [DONE]\n\n",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        blob = b"".join(events)
        for piece in (blob[:10], blob[10:50], blob[50:]):  # split mid-event on purpose
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with Server(handler) as url:
        up = OpenAIUpstream(url)
        chunks = [c async for c in up.stream(BODY)]
        await up.aclose()
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["a", "b"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, UpstreamUnavailableError),
        (500, UpstreamUnavailableError),
        (401, UpstreamUnavailableError),
        (400, BadRequestError),
    ],
)
@async_test
async def test_status_errors_are_translated(status: int, error: type[Exception]) -> None:
    async with Server(json_server(status, {"error": {"message": "nope"}})) as url:
        up = OpenAIUpstream(url)
        with pytest.raises(error, match="nope"):
            await up.complete(BODY)
        await up.aclose()


@async_test
async def test_timeout_refused_and_garbage() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with Server(silent) as url:
        up = OpenAIUpstream(url, timeout_s=0.2)
        with pytest.raises(UpstreamTimeoutError):
            await up.complete(BODY)
        await up.aclose()
    up = OpenAIUpstream(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamUnavailableError):
        await up.complete(BODY)
    async with Server(garbage) as url:
        up = OpenAIUpstream(url)
        with pytest.raises(UpstreamProtocolError):
            await up.complete(BODY)
        await up.aclose()


@async_test
async def test_stale_keepalive_connection_is_retried_on_a_fresh_one() -> None:
    async def one_shot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(200, orjson.dumps(ANSWER)))  # keep-alive advertised, then closed
        await writer.drain()

    server = Server(one_shot)
    async with server as url:
        up = OpenAIUpstream(url)
        await up.complete(BODY)
        await asyncio.sleep(0.05)
        await up.complete(BODY)
        await up.aclose()
    assert server.connections == 2


@async_test
async def test_models_passes_the_upstreams_list_through() -> None:
    models = {
        "object": "list",
        "data": [{"id": "llama-3", "object": "model", "created": 1, "owned_by": "me"}],
    }
    requests: list[tuple[bytes, bytes]] = []
    async with Server(json_server(200, models, requests)) as url:
        up = OpenAIUpstream(url, api_key="sk-up")
        assert await up.models() == models
        await up.aclose()
    assert requests[0][0].startswith(b"GET /v1/models HTTP/1.1") and b"Bearer sk-up" in requests[0][0]
    async with Server(json_server(200, {"no": "data"})) as url:
        up = OpenAIUpstream(url)
        with pytest.raises(UpstreamProtocolError, match="model list"):
            await up.models()
        await up.aclose()
