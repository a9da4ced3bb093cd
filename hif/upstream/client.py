"""An OpenAI-compatible upstream reached over HTTP: pooled keep-alive connections and timeouts.

Third-party and transport exceptions become :mod:`hif.errors` upstream errors in one place,
:func:`translate_errors`, as httpx's ``map_httpcore_exceptions`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httptools
import orjson

from hif.errors import (
    BadRequestError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    ValidationError,
)
from hif.upstream._http import Exchange, HttpPool

MAX_ERROR_BODY_BYTES = 64 * 1024


@contextlib.contextmanager
def translate_errors(name: str) -> Iterator[None]:
    """The one boundary where transport exceptions become upstream errors."""
    try:
        yield
    except TimeoutError as exc:
        raise UpstreamTimeoutError(f"upstream {name} timed out", upstream=name) from exc
    except (ConnectionError, OSError) as exc:
        raise UpstreamUnavailableError(f"upstream {name} unreachable: {exc!r}", upstream=name) from exc
    except (httptools.HttpParserError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UpstreamProtocolError(
            f"upstream {name} sent an unreadable answer: {exc}", upstream=name
        ) from exc


def status_error(name: str, status: int, body: bytes) -> Exception:
    """The error for a non-200 upstream answer: the client's fault is relayed, the rest is a 502."""
    message = _error_message(body) or f"HTTP {status}"
    if status == 400:
        return BadRequestError(f"upstream rejected the request: {message}", upstream=name)
    if status == 422:
        return ValidationError(f"upstream rejected the request: {message}", upstream=name)
    return UpstreamUnavailableError(
        f"upstream {name} answered {status}: {message}", upstream=name, upstream_status=status
    )


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
        return str(data["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace").strip()


class OpenAIUpstream:
    """Any OpenAI-compatible server at ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 512,
    ) -> None:
        self._pool = HttpPool(base_url, max_connections=max_connections, connect_timeout_s=connect_timeout_s)
        self.name = self._pool.host
        self._timeout_s = timeout_s
        self._headers = [("content-type", "application/json"), ("accept", "application/json")]
        if api_key:
            self._headers.append(("authorization", f"Bearer {api_key}"))

    async def _open(self, body: dict[str, Any]) -> Exchange:
        exchange = await self._pool.request("POST", "/chat/completions", self._headers, orjson.dumps(body))
        if exchange.status != 200:
            try:
                data = await _read_capped(exchange)
            finally:
                exchange.release()
            raise status_error(self.name, exchange.status, data)
        return exchange

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        with translate_errors(self.name):
            async with asyncio.timeout(self._timeout_s):
                async with await self._open({**body, "stream": False}) as exchange:
                    data = await exchange.response.read()
            answer = orjson.loads(data)
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise UpstreamProtocolError(f"upstream {self.name} answer has no choices", upstream=self.name)
        return answer

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        with translate_errors(self.name):
            async with asyncio.timeout(self._timeout_s):
                async with await self._open({**body, "stream": True}) as exchange:
                    async for event in _sse_events(exchange):
                        yield event

    async def models(self) -> dict[str, Any]:
        """The upstream's own ``GET /models`` answer, passed through."""
        with translate_errors(self.name):
            async with asyncio.timeout(self._timeout_s):
                async with await self._pool.request("GET", "/models", self._headers[1:], b"") as exchange:
                    data = await exchange.response.read()
                    status = exchange.status
            if status != 200:
                raise status_error(self.name, status, data)
            answer = orjson.loads(data)
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise UpstreamProtocolError(f"upstream {self.name} model list has no data", upstream=self.name)
        return answer

    async def aclose(self) -> None:
        await self._pool.aclose()


async def _read_capped(exchange: Exchange) -> bytes:
    parts, size = [], 0
    while size < MAX_ERROR_BODY_BYTES and (chunk := await exchange.response.next_chunk()) is not None:
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


async def _sse_events(exchange: Exchange) -> AsyncIterator[dict[str, Any]]:
    """Parse ``data:`` lines of an SSE body into dicts, stopping at ``[DONE]``."""
    buffer = b""
    while (chunk := await exchange.response.next_chunk()) is not None:
        buffer = (buffer + chunk).replace(b"\r\n", b"\n")
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue  # comments, event names, ids: nothing the gateway needs
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    return
                data = orjson.loads(payload)
                if isinstance(data, dict) and "error" in data:
                    raise UpstreamUnavailableError(
                        f"upstream failed mid-stream: {_error_message(payload)}", upstream="stream"
                    )
                yield data
    raise UpstreamProtocolError("upstream stream ended without [DONE]")
