"""uvicorn's httptools protocol with the limits of :class:`~hif.http_limits.HttpLimits`.

uvicorn (0.54) has no deadline while it reads a request and httptools no header size limit, so
these live in a subclass passed as ``uvicorn.Config(http=limited_protocol(limits))``. A connection
moves through three phases: idle (before a request's first byte: the keep-alive timeout governs,
also for a fresh connection, which uvicorn leaves untimed), head (the header deadline, counted
from the first byte) and body (the body idle deadline, counted from the last body byte).

Timers are armed only when a phase outlives the read that started it, so a request that arrives
in one read, the common case, costs no timer at all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hif.http_limits import HttpLimits, error_response

log = logging.getLogger(__name__)

IDLE, HEAD, BODY, CLOSING = range(4)
# After a 431 the client may still be sending its header: closing at once would reset the socket
# and the client would see ECONNRESET instead of the answer, so input is discarded this long first.
LINGER_S = 2.0
CAP_LOG_EVERY_S = 10.0
REQUEST_LINE_BYTES = 16  # method, spaces, version and CRLFs around the URL


class HeadersTooLarge(Exception):
    """Raised inside the parser callback; httptools re-raises it as the context of its own error."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _CapLog:
    """Logs the connection cap when first reached and then at most every ``CAP_LOG_EVERY_S``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.refused = 0
        self.logged_at: float | None = None

    def refuse(self, now: float, open_now: int) -> None:
        self.refused += 1
        if self.logged_at is None or now - self.logged_at >= CAP_LOG_EVERY_S:
            log.warning(
                "connection cap reached: %d connections open (max_connections %d); closed %d new "
                "connection(s) on accept",
                open_now,
                self.cap,
                self.refused,
            )
            self.logged_at, self.refused = now, 0


def limited_protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """An ``HttpToolsProtocol`` subclass bound to ``limits``, for ``uvicorn.Config(http=...)``."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "limits": limits,
            "cap_log": _CapLog(limits.max_connections),
        },
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: HttpLimits
    cap_log: _CapLog

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase = IDLE
        self.deadline: asyncio.TimerHandle | None = None
        self.head_started = 0.0
        self.head_bytes = 0
        self.body_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.phase = CLOSING
            self.cap_log.refuse(self.loop.time(), len(self.connections) - 1)
            transport.close()
            return
        # uvicorn arms the keep-alive timer only after a response; without this a connection
        # that never sends a byte would stay open for ever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self.phase = CLOSING
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.phase == CLOSING:
            return  # lingering after a 431: read and drop
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadersTooLarge):
                self._reject_too_large(exc.__context__.size)
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        self._after_read(len(data))

    def _after_read(self, size: int) -> None:
        if self.phase == HEAD:
            self.head_bytes += size
            if self.head_bytes > self.limits.max_header_bytes:
                self._reject_too_large(self.head_bytes)
            elif self.deadline is None:
                delay = self.head_started + self.limits.header_timeout_s - self.loop.time()
                self.deadline = self.loop.call_later(max(delay, 0.0), self._on_deadline)
        elif self.phase == BODY and self.deadline is None:
            self.deadline = self.loop.call_later(self.limits.body_idle_timeout_s, self._on_deadline)

    # --- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = HEAD
        self.head_started = self.loop.time()
        self.head_bytes = 0

    def on_headers_complete(self) -> None:
        size = len(self.url) + REQUEST_LINE_BYTES + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > self.limits.max_header_bytes:
            raise HeadersTooLarge(size)
        self._cancel_deadline()
        self.phase = BODY
        self.body_at = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.body_at = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        self.phase = IDLE
        super().on_message_complete()

    # --- deadlines and rejections ------------------------------------------------------------

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _on_deadline(self) -> None:
        self.deadline = None
        if self.phase == HEAD:
            self._timed_out(f"request headers not complete within {self.limits.header_timeout_s}s")
        elif self.phase == BODY:
            remaining = self.body_at + self.limits.body_idle_timeout_s - self.loop.time()
            if self.flow.read_paused:  # the app has not read what came: not the client's delay
                self.body_at = self.loop.time()
                remaining = self.limits.body_idle_timeout_s
            if remaining > 0:  # body bytes came since the timer was armed
                self.deadline = self.loop.call_later(remaining, self._on_deadline)
                return
            self._timed_out(f"no request body received for {self.limits.body_idle_timeout_s}s")

    def _timed_out(self, message: str) -> None:
        cycle = self.cycle
        if self.phase == BODY:
            can_answer = not cycle.response_started
            # The app may be waiting in receive(): it sees a disconnect and sends nothing more.
            cycle.disconnected = True
            cycle.message_event.set()
        else:  # a pipelined request's head may arrive while the previous response is still going
            can_answer = cycle is None or cycle.response_complete
        if can_answer:
            self.transport.write(error_response(408, "Request Timeout", "request_timeout", message))
        self.phase = CLOSING
        self.transport.close()

    def _reject_too_large(self, size: int) -> None:
        message = (
            f"request header fields total at least {size} bytes, over the "
            f"{self.limits.max_header_bytes}-byte limit"
        )
        self.transport.write(
            error_response(431, "Request Header Fields Too Large", "request_header_fields_too_large", message)
        )
        self._cancel_deadline()
        self.phase = CLOSING
        self._unset_keepalive_if_required()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.deadline = self.loop.call_later(LINGER_S, self.transport.close)

    def _bad_request(self) -> None:
        self.phase = CLOSING
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")
