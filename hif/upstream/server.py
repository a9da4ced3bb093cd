"""The simulator as its own OpenAI-compatible HTTP server (``hif upstream-sim``).

A raw ASGI app, so the bench measures the gateway against an upstream that costs as little as
possible: ``POST /v1/chat/completions`` (streamed or not) and ``GET /v1/models``. Injected
failures answer 500 or 429 with OpenAI error envelopes, as a real provider would.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from hif.asgi_server import run_lifespan, serve
from hif.errors import UpstreamError
from hif.upstream.settings import SimulatorSettings, UpstreamSimSettings
from hif.upstream.simulator import SIM_NAME, Simulator, model_list

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
log = logging.getLogger(__name__)


def _error(message: str, kind: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "code": kind, "param": None}})


class SimulatorApp:
    """ASGI app serving one :class:`Simulator`."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/v1/models" and method == "GET":
            await _send(send, 200, orjson.dumps(model_list([SIM_NAME])))
        elif path == "/v1/chat/completions" and method == "POST":
            await self._chat(receive, send)
        elif path in ("/healthz", "/readyz"):
            await _send(send, 200, b'{"status":"ok"}')
        else:
            await _send(send, 404, _error(f"no route {method} {path}", "not_found"))

    async def _chat(self, receive: Receive, send: Send) -> None:
        try:
            body = orjson.loads(await _read_body(receive))
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except (orjson.JSONDecodeError, ValueError) as exc:
            await _send(send, 400, _error(f"invalid JSON body: {exc}", "invalid_request_error"))
            return
        try:
            if body.get("stream"):
                await self._stream(body, send)
            else:
                await _send(send, 200, orjson.dumps(await self.simulator.complete(body)))
        except UpstreamError as exc:
            status = int(exc.context.get("upstream_status", 500))
            kind = "rate_limit_error" if status == 429 else "server_error"
            await _send(send, status, _error(exc.message, kind))

    async def _stream(self, body: dict[str, Any], send: Send) -> None:
        chunks = self.simulator.stream(body)
        first = await anext(chunks)  # an injected failure raises here, before any byte is sent
        await send({"type": "http.response.start", "status": 200, "headers": SSE})
        await send(
            {
                "type": "http.response.body",
                "body": b"data: " + orjson.dumps(first) + b"\n\n",
                "more_body": True,
            }
        )
        async for chunk in chunks:
            data = b"data: " + orjson.dumps(chunk) + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _send(send: Send, status: int, body: bytes) -> None:
    headers = [*JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def run_simulator(where: UpstreamSimSettings, simulator: SimulatorSettings) -> None:
    """Serve the simulator until SIGINT/SIGTERM (``hif upstream-sim``)."""
    log.info("upstream simulator on http://%s:%d/v1", where.sim_host, where.sim_port)
    serve(
        SimulatorApp(Simulator(simulator)),
        host=where.sim_host,
        port=where.sim_port,
        server=where.sim_server,
        log_level="warning",
    )
