"""The limits of :class:`~hif.http_limits.HttpLimits` under granian (hyper underneath).

granian (2.8) applies two of them itself, through its HTTP/1 settings: hyper's
``header_read_timeout`` closes a connection whose headers are not complete in time (without a
408), and ``max_buffer_size`` answers 431 to a head larger than the buffer. The body idle deadline
has no granian setting, so :class:`BodyIdleDeadline` applies it around the app's ``receive``.

What granian cannot do is listed in :data:`GRANIAN_UNENFORCED`: it offers no connection cap and
starts no timer on a connection that never sends a byte; and hyper's header timer also runs while a
keep-alive connection is idle, so there the header deadline doubles as the keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hif.http_limits import HttpLimits, error_body

log = logging.getLogger(__name__)

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

GRANIAN_UNENFORCED = (
    "max_connections (no connection cap)",
    "a connection that never sends a byte is never timed out",
    "idle keep-alive connections close after header_timeout_s",
)
HYPER_MIN_BUFFER_BYTES = 8192  # hyper refuses a smaller read buffer


def server_options(app: App, limits: HttpLimits | None) -> tuple[App, dict[str, Any]]:
    """``app`` wrapped for the body idle deadline, and the keyword arguments for granian's
    ``Server`` that apply the rest; logs what granian cannot enforce."""
    if limits is None:
        return app, {}
    log.warning("granian does not enforce: %s", "; ".join(GRANIAN_UNENFORCED))
    options = {"http1_settings": http1_settings(limits), "http2_settings": http2_settings(limits)}
    return BodyIdleDeadline(app, limits.body_idle_timeout_s), options


def http1_settings(limits: HttpLimits) -> Any:
    """granian's ``HTTP1Settings`` carrying the header deadline and the header size limit."""
    from granian.http import HTTP1Settings

    return HTTP1Settings(
        header_read_timeout=max(1, round(limits.header_timeout_s * 1000)),
        max_buffer_size=max(HYPER_MIN_BUFFER_BYTES, limits.max_header_bytes),
    )


def http2_settings(limits: HttpLimits) -> Any:
    """granian's ``HTTP2Settings`` with the same header size limit (for prior-knowledge h2c)."""
    from granian.http import HTTP2Settings

    return HTTP2Settings(max_headers_size=limits.max_header_bytes)


class BodyIdleDeadline:
    """ASGI wrapper: a request whose body stalls for ``idle_timeout_s`` gets 408 and is closed.

    The app then reads ``http.disconnect`` (as if the client had left) and whatever it sends after
    that is dropped, so it needs no knowledge of the deadline.
    """

    def __init__(self, app: App, idle_timeout_s: float) -> None:
        self.app = app
        self.idle_timeout_s = idle_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = _Exchange(send)

        async def timed_receive() -> Message:
            if state.timed_out:
                return {"type": "http.disconnect"}
            try:
                async with asyncio.timeout(self.idle_timeout_s):
                    return await receive()
            except TimeoutError:
                await state.time_out(self.idle_timeout_s)
                return {"type": "http.disconnect"}

        await self.app(scope, timed_receive, state.send)


class _Exchange:
    """Tracks one request's response so a timeout knows whether a 408 can still be sent."""

    __slots__ = ("raw_send", "started", "timed_out")

    def __init__(self, raw_send: Send) -> None:
        self.raw_send = raw_send
        self.started = False
        self.timed_out = False

    async def send(self, message: Message) -> None:
        if self.timed_out:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self.raw_send(message)

    async def time_out(self, idle_timeout_s: float) -> None:
        self.timed_out = True
        if self.started:
            return  # the response is under way: the server closes when the app returns
        body = error_body("request_timeout", f"no request body received for {idle_timeout_s}s")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await self.raw_send({"type": "http.response.start", "status": 408, "headers": headers})
        await self.raw_send({"type": "http.response.body", "body": body})
