"""The load client's HTTP/1.1 protocol, fed scripted byte chunks at the transport seam."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hif.errors import ClientConnectError, ClientProtocolError, ClientTimeoutError, ConfigError
from hif.harness.client import HttpClient, HttpProtocol, Response

OK_BODY = b'{"ok":true}'
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n" + OK_BODY


class FakeTransport(asyncio.Transport):
    """Records writes; ``on_write`` lets a test script the server's answer."""

    def __init__(self, proto: HttpProtocol, on_write: Callable[[FakeTransport, bytes], None] | None = None):
        super().__init__()
        self.proto, self.on_write = proto, on_write
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(bytes(data))
        if self.on_write is not None:
            self.on_write(self, data)

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self.proto.connection_lost(None)

    def is_closing(self) -> bool:
        return self.aborted


def feed(proto: HttpProtocol, data: bytes, step: int) -> None:
    for i in range(0, len(data), step):
        proto.data_received(data[i : i + step])


def exchange(answer: bytes, step: int = 1, *, close_after: bool = False) -> Response:
    async def go() -> Response:
        proto = HttpProtocol(asyncio.get_running_loop())
        transport = FakeTransport(proto)
        proto.connection_made(transport)
        fut = proto.send(b"GET / HTTP/1.1\r\n\r\n")
        feed(proto, answer, step)
        if close_after:
            proto.connection_lost(None)
        return await fut

    return asyncio.run(go())


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_content_length_body_in_any_chunking(step: int) -> None:
    resp = exchange(OK, step)
    assert (resp.status, resp.body, resp.keep_alive) == (200, OK_BODY, True)
    assert resp.json() == {"ok": True}
    assert resp.header("Content-Type") == "application/json"


def test_chunked_body() -> None:
    answer = (
        b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nx-trace-id: tr-9\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    resp = exchange(answer, 3)
    assert (resp.status, resp.body) == (201, b"hello world")
    assert resp.header("x-trace-id") == "tr-9"


def test_connection_close_answer_is_not_kept_alive() -> None:
    resp = exchange(b"HTTP/1.1 503 Busy\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno")
    assert (resp.status, resp.body, resp.keep_alive) == (503, b"no", False)


def test_body_delimited_by_eof() -> None:
    resp = exchange(b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 5, close_after=True)
    assert (resp.status, resp.body, resp.keep_alive) == (200, b"until the end", False)


def test_truncated_body_is_a_protocol_error() -> None:
    with pytest.raises(ClientProtocolError, match="closed before the full answer"):
        exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort", close_after=True)


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(ClientProtocolError, match="unparseable"):
        exchange(b"SMTP ready\r\n\r\n")


def test_non_json_body_raises_protocol_error_on_json() -> None:
    resp = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc")
    with pytest.raises(ClientProtocolError, match="not JSON"):
        resp.json()


def test_two_answers_on_one_connection() -> None:
    async def go() -> list[bytes]:
        proto = HttpProtocol(asyncio.get_running_loop())
        proto.connection_made(FakeTransport(proto))
        bodies = []
        for _ in range(2):
            fut = proto.send(b"GET / HTTP/1.1\r\n\r\n")
            feed(proto, OK, 10)
            bodies.append((await fut).body)
        return bodies

    assert asyncio.run(go()) == [OK_BODY, OK_BODY]


# --- HttpClient over scripted connections -----------------------------------------------------


def scripted_client(scripts: list[Callable[[FakeTransport, bytes], None] | None], **kw: float) -> HttpClient:
    """A client whose n-th connection answers with the n-th script."""
    made: list[HttpProtocol] = []

    async def connector() -> HttpProtocol:
        proto = HttpProtocol(asyncio.get_running_loop())
        proto.connection_made(FakeTransport(proto, scripts[len(made)]))
        made.append(proto)
        return proto

    return HttpClient("http://example.test:81/base", connector=connector, **kw)


def answer_ok(t: FakeTransport, data: bytes) -> None:
    asyncio.get_running_loop().call_soon(t.proto.data_received, OK)


def test_request_bytes_and_keep_alive_reuse() -> None:
    async def go() -> tuple[int, list[bytes]]:
        client = scripted_client([answer_ok], timeout_s=1)
        await client.request("POST", "/v1/x", b"{}", {"x-tenant-id": "a"})
        await client.request("GET", "/v1/y")
        conn = client._conn
        assert conn is not None
        written = conn._transport.written  # type: ignore[union-attr]
        return client.connects, written

    connects, written = asyncio.run(go())
    assert connects == 1
    post = written[0]
    assert post.startswith(b"POST /base/v1/x HTTP/1.1\r\nhost: example.test:81\r\n")
    assert b"x-tenant-id: a\r\n" in post and b"content-length: 2\r\n\r\n{}" in post
    assert b"content-length" not in written[1]


def test_timeout_raises_and_drops_the_connection() -> None:
    async def go() -> HttpClient:
        client = scripted_client([None, answer_ok], timeout_s=0.05)
        with pytest.raises(ClientTimeoutError, match=r"0\.05s"):
            await client.request("GET", "/")
        await client.request("GET", "/")  # a fresh connection answers
        return client

    assert asyncio.run(go()).connects == 2


def test_stale_keep_alive_connection_is_retried_once() -> None:
    calls = {"n": 0}

    def ok_then_close_on_next(t: FakeTransport, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            answer_ok(t, data)
        else:  # the server closed the idle connection: no answer byte, just EOF
            asyncio.get_running_loop().call_soon(t.abort)

    async def go() -> HttpClient:
        client = scripted_client([ok_then_close_on_next, answer_ok], timeout_s=1)
        await client.request("GET", "/")
        resp = await client.request("GET", "/")
        assert resp.status == 200
        return client

    assert asyncio.run(go()).connects == 2


def test_close_mid_answer_is_not_retried() -> None:
    def half(t: FakeTransport, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(t.proto.data_received, OK[:20])
        loop.call_soon(t.abort)

    async def go() -> None:
        client = scripted_client([half, answer_ok], timeout_s=1)
        with pytest.raises(ClientProtocolError):
            await client.request("GET", "/")

    asyncio.run(go())


def test_connect_errors_are_translated() -> None:
    async def refused() -> HttpProtocol:
        raise ConnectionRefusedError(111, "Connection refused")

    async def go() -> None:
        client = HttpClient("http://127.0.0.1:9", connector=refused)
        with pytest.raises(ClientConnectError, match="Connection refused") as info:
            await client.request("GET", "/")
        assert info.value.error_class == "connect"

    asyncio.run(go())


def test_only_plain_http_urls() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        HttpClient("https://example.test")
