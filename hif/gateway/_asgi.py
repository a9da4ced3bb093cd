"""Raw ASGI plumbing: reading a bounded body, sending JSON and SSE, one error renderer.

The gateway is a plain ASGI callable (no framework) because its budget is under a millisecond
of added latency on one core; these helpers are the little a framework would have given.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from hif.errors import ExplainerError, HifError, PayloadTooLargeError, RequestError, StoreError, UpstreamError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (``name`` lower-case), decoded as latin-1 like HTTP/1.1 says."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body; 413 when Content-Length or the bytes actually sent pass ``limit``."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLargeError(f"request body of {length} bytes is over the {limit}-byte limit")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is over the {limit}-byte limit")
        parts.append(chunk)
        if not message.get("more_body"):
            return parts[0] if len(parts) == 1 else b"".join(parts)


class ClientGone(Exception):
    """The client disconnected before we could answer; nothing to send."""


class Responder:
    """Sends one response and remembers what it sent (status for metrics, whether it started)."""

    __slots__ = ("send", "started", "status", "upstream_s")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0
        self.started = False
        self.upstream_s: float | None = None

    async def start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.status, self.started = status, True
        await self.send({"type": "http.response.start", "status": status, "headers": list(headers)})

    async def body(self, data: bytes, more: bool = False) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def json(self, status: int, data: Any, headers: Headers | None = None) -> None:
        payload = data if isinstance(data, bytes) else orjson.dumps(data)
        length = (b"content-length", str(len(payload)).encode())  # no chunked framing for small bodies
        await self.start(status, [JSON_TYPE, length, *(headers or ())])
        await self.body(payload)

    async def html(self, status: int, page: bytes, headers: Headers) -> None:
        """A page; ``headers`` carry its content type and security policy."""
        await self.start(status, [(b"content-length", str(len(page)).encode()), *headers])
        await self.body(page)

    async def error(self, exc: BaseException) -> None:
        status, envelope, headers = render_error(exc)
        await self.json(status, envelope, headers)


def render_error(exc: BaseException) -> tuple[int, dict[str, Any], Headers]:
    """The one place an exception becomes an HTTP status and an OpenAI error envelope."""
    if isinstance(exc, RequestError | UpstreamError):
        headers: Headers = []
        allow = getattr(exc, "allow", None)
        if allow:
            headers.append((b"allow", allow.encode()))
        if exc.status_code == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        retry_after_s = getattr(exc, "retry_after_s", None)
        if retry_after_s is not None:  # whole seconds, rounded up: never invite a retry too early
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after_s))).encode()))
        return exc.status_code, exc.envelope(), headers
    if isinstance(exc, StoreError):
        return (
            503,
            _envelope(f"trace store unavailable: {exc.message}", "server_error", "store_unavailable"),
            [],
        )
    if isinstance(exc, ExplainerError | HifError):
        return 500, _envelope(exc.message, "server_error", "internal_error"), []
    return 500, _envelope("internal server error", "server_error", "internal_error"), []


def _envelope(message: str, kind: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


def sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
