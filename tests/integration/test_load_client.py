"""The load client over real loopback sockets: keep-alive, server-closed connections, refusals, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from hif.errors import ClientConnectError, ClientTimeoutError
from hif.harness.client import HttpClient, new_event_loop
from hif.harness.target import TargetScript, TargetServer
from tests.conftest import free_port


def run(coro_fn):  # type: ignore[no-untyped-def]
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


def test_keep_alive_against_the_target() -> None:
    async def go() -> tuple[int, int, str | None]:
        server = TargetServer(TargetScript())
        await server.start()
        client = HttpClient(server.url, timeout_s=5)
        try:
            for _ in range(50):
                assert (await client.request("GET", "/healthz")).status == 200
            body = b'{"explain":{"granularity":"token"}}'
            resp = await client.request("POST", "/v1/chat/completions", body)
            return client.connects, server.state.requests, resp.header("x-trace-id")
        finally:
            await client.close()
            await server.close()

    connects, served, trace = run(go)
    assert (connects, served) == (1, 51)
    assert trace == "tr-1"


async def _closing_server(port: int) -> asyncio.AbstractServer:
    """Answers one request per connection with ``connection: close`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


def test_reconnects_after_connection_close() -> None:
    async def go() -> int:
        port = free_port()
        server = await _closing_server(port)
        client = HttpClient(f"http://127.0.0.1:{port}", timeout_s=5)
        try:
            for _ in range(5):
                resp = await client.request("GET", "/")
                assert (resp.status, resp.body, resp.keep_alive) == (200, b"ok", False)
            return client.connects
        finally:
            await client.close()
            server.close()

    assert run(go) == 5


def test_refused_and_silent_servers() -> None:
    async def go() -> None:
        refused = HttpClient(f"http://127.0.0.1:{free_port()}", timeout_s=2)
        with pytest.raises(ClientConnectError):
            await refused.request("GET", "/")

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 16)  # reads the request, never answers; EOF once the client gives up
            await reader.read(1 << 16)
            writer.close()

        port = free_port()
        server = await asyncio.start_server(silent, "127.0.0.1", port)
        client = HttpClient(f"http://127.0.0.1:{port}", timeout_s=0.2)
        try:
            with pytest.raises(ClientTimeoutError):
                await client.request("GET", "/")
        finally:
            await client.close()
            server.close()

    run(go)
