"""The scripted target's explained stream has the gateway's shape: the trace header, then the
``explanation`` event as the last one before ``[DONE]``, with the same keys as the gateway sends."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from hif.harness.target import TargetScript, TargetServer
from tests.unit.gateway.fakes import async_test
from tests.unit.gateway.test_app import CHAT, call, make, started

BODY = {**CHAT, "stream": True, "explain": {"granularity": "token"}}


def _dechunk(body: bytes) -> bytes:
    out: list[bytes] = []
    i = 0
    while True:
        eol = body.index(b"\r\n", i)
        size = int(body[i:eol], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[eol + 2 : eol + 2 + size])
        i = eol + 2 + size + 2


async def _post(server: TargetServer, body: dict[str, Any]) -> bytes:
    """One chat over a raw socket: the whole chunked answer, head included."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    raw = orjson.dumps(body)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n%s" % (len(raw), raw)
    )
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)
    finally:
        writer.close()


async def _target_stream(server: TargetServer) -> tuple[dict[str, str], list[bytes]]:
    head, _, body = (await _post(server, BODY)).partition(b"\r\n\r\n")
    headers = {
        k.strip().lower().decode(): v.strip().decode()
        for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    return headers, [e for e in _dechunk(body).split(b"\n\n") if e]


def _last_event(events: list[bytes]) -> dict[str, Any]:
    assert events[-1] == b"data: [DONE]"
    return dict(orjson.loads(events[-2][len(b"data: ") :]))


@async_test
async def test_explained_stream_has_the_gateways_event_shape() -> None:
    app, _ = make()
    await started(app)
    reply = await call(app, "POST", "/v1/chat/completions", BODY)
    await app.shutdown()
    gateway = _last_event(reply.events())
    server = TargetServer(TargetScript(stream_tokens=3, explain_ms=50.0))
    await server.start()
    headers, events = await _target_stream(server)
    target = _last_event(events)
    assert set(target) == set(gateway) and target["choices"] == gateway["choices"] == []
    assert set(target["explanation"]) == set(gateway["explanation"])
    for e, trace_header in ((gateway["explanation"], reply.headers["x-trace-id"]),
                            (target["explanation"], headers["x-trace-id"])):  # fmt: skip
        assert e["trace_id"] == trace_header and e["granularity"] == "token" and e["state"] == "queued"
        assert e["status_url"] == f"/v1/traces/{e['trace_id']}/status"
    # the target's usage chunk comes before it, as an upstream's does through the gateway
    assert b'"usage"' in events[-3]
    ready_at, granularity = server.state.traces[target["explanation"]["trace_id"]]
    assert granularity == "token" and ready_at > server.state.t0
    await server.close()


@async_test
async def test_a_plain_stream_has_no_trace() -> None:
    server = TargetServer(TargetScript(stream_tokens=3))
    await server.start()
    answer = await _post(server, {**CHAT, "stream": True})
    await server.close()
    assert b"x-trace-id" not in answer and b'"explanation"' not in answer and not server.state.traces
