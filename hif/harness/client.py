"""A lean keep-alive HTTP/1.1 client for the load generator: one connection, one request at a time.

Why not httpx or aiohttp: on this machine a raw asyncio Protocol with httptools reaches ~10x
aiohttp and ~100x httpx requests/s per core against nginx (one core each, 64 connections; see
docs/design.md);
the generator must not be the bottleneck (``bench/generator_throughput.py`` measures the runner
against wrk). The runner's chat workers drive :class:`BareHttpProtocol` connections from callbacks
(``load/lane.py``); :class:`HttpClient` (one connection, awaited) serves the pre-flight, the trace
polls and the soak probes, so chat and polling traffic never share a connection.

>>> async def demo() -> int:                      # doctest: +SKIP
...     client = HttpClient("http://127.0.0.1:8080", timeout_s=5)
...     resp = await client.request("GET", "/healthz")
...     await client.close()
...     return resp.status

Failures raise :class:`~hif.errors.ClientTimeoutError`, :class:`~hif.errors.ClientConnectError`
or :class:`~hif.errors.ClientProtocolError`; their ``error_class`` names the record's class.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httptools
import orjson

from hif.errors import ClientConnectError, ClientProtocolError, ClientTimeoutError, ConfigError

USER_AGENT = b"hif-load/1"


class Response(NamedTuple):
    """One answer. A NamedTuple, not a frozen dataclass: it is built once per request."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = []  # never mutated; each answer brings its own list
    keep_alive: bool = True

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ClientProtocolError(f"answer is not JSON: {self.body[:80]!r}") from exc

    def header(self, name: str) -> str | None:
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None


_NO_HEADERS: list[tuple[bytes, bytes]] = []  # what a bare protocol's answers carry; never appended to


class BareHttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection parsed by httptools, answers without their headers.

    The load runner's chat lane needs each answer's status and body only, and httptools calls
    back once per header (~0.3 us each); with no ``on_header`` here it calls nothing.
    :class:`HttpProtocol` keeps the headers. Whether an answer cut short by EOF was complete
    (a body delimited by connection close) is read from its raw header bytes, only then.

    It is also the transport seam for tests: call ``connection_made(fake)``, ``send(...)`` and
    feed scripted byte chunks to ``data_received``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.BaseTransport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self.busy = False  # a request is out and its answer (or failure) not yet handed on
        self._body: list[bytes] = []
        self._raw: list[bytes] = []  # the current answer's raw chunks, read only at an early EOF
        self._headers = _NO_HEADERS  # HttpProtocol collects them
        self.closed = False
        self.received_any = False

    # asyncio callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.busy:
            return
        raw = b"".join(self._raw)
        end = raw.find(b"\r\n\r\n")
        if exc is None and end >= 0 and not _framed(raw[:end]):
            # A body delimited by connection close (HTTP/1.0 style): EOF is its end.
            self._finish(self._parser.get_status_code(), keep_alive=False)
            return
        self.busy = False
        self.failed(ClientProtocolError(f"connection closed before the full answer ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self._raw.append(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ClientProtocolError(f"unparseable HTTP answer: {exc}"))

    # httptools callbacks (no on_headers_complete: the status is read once, at the end) -----
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._finish(self._parser.get_status_code(), keep_alive=self._parser.should_keep_alive())

    # API -----------------------------------------------------------------------------------
    def send(self, data: bytes) -> asyncio.Future[Response]:
        """Write one request; the future resolves with its answer (the coroutine client)."""
        waiter = self._loop.create_future()
        self.write(data)
        self._waiter = waiter
        return waiter

    def write(self, data: bytes) -> None:
        """Write one request; its answer goes to :meth:`answered` (or :meth:`failed`)."""
        if self.closed or self._transport is None:
            raise ClientProtocolError("connection is closed")
        self.busy = True
        self.received_any = False
        self._transport.write(data)  # type: ignore[attr-defined]

    # Where answers go. The default resolves the future of :meth:`send`; the load runner's chat
    # lane overrides both to handle the answer inside ``data_received``, with no future at all.
    def answered(self, resp: Response) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)

    def failed(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def _finish(self, status: int, *, keep_alive: bool) -> None:
        headers = self._headers
        if headers is not _NO_HEADERS:  # a bare protocol shares one empty list, never filled
            self._headers = []
        resp = Response(status, b"".join(self._body), headers, keep_alive)
        self._body = []
        self._raw.clear()
        self.busy = False
        self.answered(resp)

    def _fail(self, exc: Exception) -> None:
        self.busy = False
        self.abort()
        self.failed(exc)


class HttpProtocol(BareHttpProtocol):
    """:class:`BareHttpProtocol` that keeps each answer's headers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))


def _framed(head: bytes) -> bool:
    """Whether a raw header block declares a length or chunking (so EOF is not a valid end)."""
    block = head.lower()
    if b"\r\ncontent-length:" in block:
        return True
    return any(line.startswith(b"transfer-encoding:") and b"chunked" in line for line in block.split(b"\r\n"))


Connector = Callable[[], Awaitable[HttpProtocol]]


class HttpClient:
    """One keep-alive connection to ``base_url``; reconnects when the server closes it."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 15.0,
        connect_timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        connector: Connector | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError("base_url", f"must be an http:// URL (TLS is not supported), got {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s or timeout_s
        base = {"host": f"{self.host}:{self.port}", "user-agent": USER_AGENT.decode(), **(headers or {})}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in base.items()).encode("latin-1")
        self._connector = connector or self._connect
        self._conn: HttpProtocol | None = None
        self._sweeper: _Sweeper | None = None
        self.connects = 0

    async def _connect(self) -> HttpProtocol:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: HttpProtocol(loop), self.host, self.port)
        return proto

    async def _open(self) -> HttpProtocol:
        try:
            self._conn = await asyncio.wait_for(self._connector(), self.connect_timeout_s)
        except TimeoutError as exc:
            raise ClientConnectError(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise ClientConnectError(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        self.connects += 1
        return self._conn

    def build(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> bytes:
        """The request bytes; callers on the hot path build once and reuse them."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode("latin-1")
        length = b"content-length: %d\r\n" % len(body) if body or method in ("POST", "PUT") else b""
        line = f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1")
        return line + self._head + extra + length + b"\r\n" + body

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Response:
        return await self.send(self.build(method, path, body, headers))

    async def send(self, data: bytes) -> Response:
        """Send prebuilt request bytes; one retry when a reused connection was closed under us."""
        conn = self._conn
        reused = conn is not None and not conn.closed
        if conn is None or not reused:  # the hot path (a live connection) awaits nothing extra
            conn = await self._open()
        try:
            return await self._exchange(conn, data)
        except ClientProtocolError:
            # A keep-alive connection the server closed while idle fails before any answer byte;
            # that is not the server's answer, so resend once on a fresh connection.
            if not reused or conn.received_any:
                raise
        return await self._exchange(await self._open(), data)

    async def _exchange(self, conn: HttpProtocol, data: bytes) -> Response:
        fut = conn.send(data)
        sweeper = self._sweeper or self._start_sweeper()
        sweeper.watch(conn, fut, time.monotonic() + self.timeout_s, self.timeout_s)
        try:
            resp = await fut
        except asyncio.CancelledError:
            conn.abort()  # the answer may still arrive; this connection is unusable now
            raise
        finally:
            sweeper.inflight.pop(conn, None)
        if not resp.keep_alive:
            conn.abort()
        return resp

    def _start_sweeper(self) -> _Sweeper:
        loop = asyncio.get_running_loop()
        sweeper = _SWEEPERS.get(loop)
        if sweeper is None:
            sweeper = _SWEEPERS[loop] = _Sweeper(loop)
        self._sweeper = sweeper
        return sweeper

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.abort()
            self._conn = None


class _Sweeper:
    """Request timeouts for every client on one loop, checked every ``SWEEP_S``.

    Why not ``call_later`` per request: a timer armed and cancelled per request costs ~25% of the
    client's CPU per request; a deadline in a dict and one sweep every 20 ms costs next to nothing.
    Timeouts fire up to ``SWEEP_S`` late, which is noise next to any sensible timeout.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.inflight: dict[HttpProtocol, tuple[asyncio.Future[Response], float, float]] = {}
        self._handle: asyncio.TimerHandle | None = None

    def watch(
        self, conn: HttpProtocol, fut: asyncio.Future[Response], deadline: float, timeout_s: float
    ) -> None:
        self.inflight[conn] = (fut, deadline, timeout_s)
        if self._handle is None:
            self._handle = self.loop.call_later(SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        late = [(c, entry) for c, entry in self.inflight.items() if entry[1] <= now]
        for conn, (fut, _, timeout_s) in late:
            self.inflight.pop(conn, None)
            if not fut.done():
                fut.set_exception(ClientTimeoutError(f"no answer within {timeout_s:g}s"))
            conn.abort()
        # Re-arm only while something is in flight: an idle loop keeps no timer alive.
        self._handle = self.loop.call_later(SWEEP_S, self._sweep) if self.inflight else None


SWEEP_S = 0.02
_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = weakref.WeakKeyDictionary()


def install_uvloop() -> bool:
    """Use uvloop for new event loops when it is installed (2x the stdlib loop's req/s)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop where available, else the stdlib one."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
