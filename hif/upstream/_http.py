"""A lean HTTP/1.1 client: asyncio Protocols, httptools parsing, a pool of keep-alive connections.

httpx's shared pool collapses under concurrency and aiohttp's client tops out near 5k requests/s
on one core (figures and the bench commands in docs/design.md); the gateway's upstream path needs
neither feature set, only POST with a small JSON body and a (possibly streamed) response.
Exceptions are the stdlib's (OSError, TimeoutError, ConnectionError) and
``httptools.HttpParserError``; ``hif.upstream.client`` translates them at one boundary.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import typing
import urllib.parse
from typing import Any

import httptools


class _Response:
    """Status, headers and body chunks of one response, fed by the connection's parser."""

    __slots__ = ("_chunks", "_waiter", "done", "error", "headers", "headers_ready", "status")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.headers_ready: asyncio.Future[None] = loop.create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.done = False
        self.error: BaseException | None = None

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done, self.error = True, error
        if not self.headers_ready.done():
            if error is not None:
                self.headers_ready.set_exception(error)
            else:
                self.headers_ready.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_chunk(self) -> bytes | None:
        """The next body chunk, or None at the end; raises the connection's error."""
        while not self._chunks:
            if self.done:
                if self.error is not None:
                    raise self.error
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._chunks.popleft()

    async def read(self) -> bytes:
        parts = []
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; a response parser per message."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.response: _Response | None = None
        self.closed = False
        self.keep_alive = True
        self.used = False
        self._parser = httptools.HttpResponseParser(self)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, so no isinstance check.
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("upstream closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response.status = self._parser.get_status_code()
            if not self.response.headers_ready.done():
                self.response.headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.feed(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        response, self.response = self.response, None
        if response is not None:
            response.finish()

    def _fail(self, exc: BaseException) -> None:
        response, self.response = self.response, None
        if response is not None:
            response.finish(exc)

    def send(self, data: bytes, loop: asyncio.AbstractEventLoop) -> _Response:
        assert self.transport is not None
        self.response = _Response(loop)
        self.used = True
        self.transport.write(data)
        return self.response

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """Keep-alive connections to one origin, at most ``max_connections`` open at a time."""

    def __init__(self, base_url: str, *, max_connections: int, connect_timeout_s: float) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.path_prefix = url.path.rstrip("/")
        self.host_header = url.netloc.encode()
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self._connect_timeout_s = connect_timeout_s
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._all: set[_Connection] = set()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _transport, conn = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port, ssl=self._ssl),
            self._connect_timeout_s,
        )
        self._all.add(conn)
        return conn

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
            self._all.discard(conn)
        return None

    async def request(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Exchange:
        """Send a request; returns once response headers are in. Release the exchange when done."""
        await self._slots.acquire()
        try:
            return await self._send(method, path, headers, body)
        except BaseException:
            self._slots.release()
            raise

    async def _send(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Exchange:
        head = [
            f"{method} {self.path_prefix}{path} HTTP/1.1\r\n".encode(),
            b"host: ",
            self.host_header,
            b"\r\n",
        ]
        head += [f"{k}: {v}\r\n".encode() for k, v in headers]
        head.append(f"content-length: {len(body)}\r\n\r\n".encode())
        data = b"".join(head) + body
        loop = asyncio.get_running_loop()
        conn = self._take_idle()
        if conn is not None:
            response = conn.send(data, loop)
            try:
                await response.headers_ready
                return Exchange(self, conn, response)
            except (ConnectionError, OSError):
                # A reused connection the server had already closed: nothing reached the
                # upstream application, so one retry on a fresh connection is safe (httpcore does too).
                conn.close()
        conn = await self._connect()
        response = conn.send(data, loop)
        try:
            await response.headers_ready
        except BaseException:
            conn.close()
            raise
        return Exchange(self, conn, response)

    def _release(self, conn: _Connection, complete: bool) -> None:
        if complete and conn.keep_alive and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()
            self._all.discard(conn)
        self._slots.release()

    async def aclose(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()


class Exchange:
    """A response being read; ``release()`` returns the connection to the pool (or closes it)."""

    __slots__ = ("_conn", "_pool", "_released", "response")

    def __init__(self, pool: HttpPool, conn: _Connection, response: _Response) -> None:
        self._pool, self._conn, self.response = pool, conn, response
        self._released = False

    @property
    def status(self) -> int:
        return self.response.status

    def header(self, name: bytes) -> bytes | None:
        return self.response.headers.get(name)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self._conn, self.response.done and self.response.error is None)

    async def __aenter__(self) -> Exchange:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release()
