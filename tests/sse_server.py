"""A scripted SSE server for tests and benches: known events at known gaps, real loopback sockets.

Each chat request is answered with the script's events, each written ``delay_s`` after the one
before and stamped with the monotonic time of its write (so a test knows the true TTFT, gaps and
end-to-end of every request). ``GET /healthz`` answers 200. A script entry whose payload is
:data:`CUT` closes the connection there (a stream cut mid-way).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import orjson

CUT = object()
DONE = b"[DONE]"
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"x-trace-id: tr-1\r\n\r\n"
)


def chunk(delta: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with ``delta`` (no choices when None)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": choices, **extra}


def event(payload: Any, eol: bytes = b"\n") -> bytes:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return b"data: " + data + eol + eol


@dataclasses.dataclass
class Served:
    """One answered request: when its request arrived and when each event left."""

    received: float
    sent: list[float] = dataclasses.field(default_factory=list)


class ScriptedSSE:
    """``async with ScriptedSSE(script) as srv``: ``srv.port``, ``srv.served``. ``eol``: the SSE
    line ending (LF, CRLF or a lone CR, all allowed by the SSE spec)."""

    def __init__(
        self,
        script: list[tuple[float, Any]] | Callable[[int], list[tuple[float, Any]]],
        eol: bytes = b"\n",
    ) -> None:
        self.script = script
        self.eol = eol
        self.served: list[Served] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedSSE:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received = time.monotonic()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET"):  # /healthz, /v1/featuresets: the pre-flight
                    body = b'{"data":[{"name":"fs","available":true}]}'
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                if not await self._answer(writer, received):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, received: float) -> bool:
        served = Served(received)
        self.served.append(served)
        script = self.script(len(self.served) - 1) if callable(self.script) else self.script
        writer.write(HEAD)
        deadline = received
        for delay_s, payload in script:
            deadline += delay_s
            wait = deadline - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if payload is CUT:
                writer.transport.abort()
                return False
            data = event(payload, self.eol)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            served.sent.append(time.monotonic())
        writer.write(b"0\r\n\r\n")
        return True
