"""A scripted HTTP target for tests and benches: known delays, stalls, errors and trace lifecycles.

Not the gateway: a simulator of its HTTP surface (``/healthz``, ``/v1/featuresets``,
``/v1/chat/completions``, ``/v1/traces/{id}/status`` and ``/graph``) whose timing is fixed by its
script, so tests can assert exact percentiles and benches know the true latency distribution.

    python -m hif.harness.target --port 8099 --delay-ms 5 --stall-every-s 10 --stall-s 1

Stalls: during the last ``stall_s`` of every ``stall_every_s`` period the server answers nothing;
requests that arrive then are answered when the stall ends (plus ``delay_ms``). Streamed chats
(``"stream": true``) are answered as SSE, one content chunk per token (see ``TargetScript``); one
with ``explain`` gets the gateway's ``x-trace-id`` header and its ``explanation`` event after the
usage chunk, before ``[DONE]`` (hif/gateway/chat.py), its trace's clock starting at the stream's end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import heapq
import itertools
import random
import time

import httptools
import orjson


@dataclasses.dataclass(frozen=True, kw_only=True)
class TargetScript:
    delay_ms: float = 0.0  # chat answer delay
    stall_every_s: float = 0.0  # 0 = never stall
    stall_s: float = 0.0
    error_rate: float = 0.0  # fraction of chats answered 500
    featuresets: tuple[str, ...] = ("sae-gpt4-2m",)
    explain_ms: float = 50.0  # trace lifetime queued -> terminal
    explain_state: str = "complete"  # terminal state traces reach
    token_explain_ms: float | None = None  # token traces (default: explain_ms)
    seed: int = 0
    # A chat with "stream": true gets SSE: a role-only chunk at delay_ms, then stream_tokens
    # one-token content chunks token_gap_ms apart, a usage chunk and [DONE]. A chunk due inside a
    # stall is written when the stall ends (a stalled stream), so the script fixes every timing.
    stream_tokens: int = 64
    token_gap_ms: float = 0.0
    # A queueing server with a known answer: ``slots`` chats served at once, first come first
    # served, each for ``delay_ms`` (service "fixed") or an exponential time of that mean
    # ("exponential"); 0 slots: every chat answered after delay_ms, none waits.
    slots: int = 0
    service: str = "fixed"


class _State:
    def __init__(self, script: TargetScript) -> None:
        self.script = script
        self.t0 = time.monotonic()
        self.traces: dict[str, tuple[float, str]] = {}  # id -> (ready at, granularity)
        self.ids = itertools.count(1)
        self.rng = random.Random(script.seed)
        self.requests = 0
        self.stream_parts = [_STREAM_HEAD + _chunk(_ROLE)]
        self.stream_parts += [_chunk(_TOKEN) for _ in range(script.stream_tokens)]
        self.stream_parts.append(_chunk(_usage(script.stream_tokens)) + _STREAM_END)
        # With no delay, gap or stall the whole answer is one write, built once: a streamed
        # chat then costs this target about what a plain one does, so a generator bench
        # measures the generator.
        self.stream_whole = b"".join(self.stream_parts)
        self.free_at = [0.0] * script.slots  # when each slot is next free (a heap)

    def service_s(self, now: float) -> float:
        """The chat's answer delay: its wait for a slot (if slots are modelled) plus its service time."""
        s = self.script
        mean_s = s.delay_ms / 1000.0
        service = self.rng.expovariate(1.0 / mean_s) if s.service == "exponential" and mean_s > 0 else mean_s
        if not self.free_at:
            return service
        start = max(now, heapq.heappop(self.free_at))
        heapq.heappush(self.free_at, start + service)
        return start + service - now

    def new_trace(self, granularity: str) -> tuple[str, float]:
        """A trace id and how long its explanation takes (queued -> terminal), in seconds."""
        s = self.script
        ms = s.token_explain_ms if granularity == "token" and s.token_explain_ms is not None else s.explain_ms
        return f"tr-{next(self.ids)}", ms / 1000.0

    def stall_left_s(self, now: float) -> float:
        s = self.script
        if s.stall_every_s <= 0 or s.stall_s <= 0:
            return 0.0
        phase = (now - self.t0) % s.stall_every_s
        start = s.stall_every_s - s.stall_s
        return s.stall_every_s - phase if phase >= start else 0.0


_STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
_BASE = b'{"id":"chatcmpl-target","object":"chat.completion.chunk","model":"target","choices":'
_ROLE = _BASE + b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
_TOKEN = _BASE + b'[{"index":0,"delta":{"content":" ok"},"finish_reason":null}]}'


def _usage(n: int) -> bytes:
    return _BASE + b'[],"usage":{"prompt_tokens":8,"completion_tokens":%d,"total_tokens":%d}}' % (n, n + 8)


def _chunk(payload: bytes) -> bytes:
    data = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


_STREAM_END = _chunk(b"[DONE]") + b"0\r\n\r\n"  # the last event and the chunked body's end


def _explanation_event(trace_id: str, granularity: str, features: str) -> bytes:
    """The gateway's last event of an explained stream: the chat's ids, no choices, and the
    explanation object as a plain answer carries it (hif/gateway/chat.py)."""
    explanation = {
        "trace_id": trace_id,
        "state": "queued",
        "granularity": granularity,
        "features": features,
        "status_url": f"/v1/traces/{trace_id}/status",
        "graph_url": f"/v1/traces/{trace_id}/graph",
        "view_url": f"/v1/traces/{trace_id}/view?token=target",
    }
    # the gateway copies id, object, created and model from the stream's first chunk (no created here)
    event = {"id": "chatcmpl-target", "object": "chat.completion.chunk", "created": None, "model": "target"}
    return _chunk(orjson.dumps({**event, "choices": [], "explanation": explanation}))


def _response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (status, len(body))
    return head + extra + b"\r\n" + body


def _explain(body: bytes, featureset: str) -> tuple[str, str] | None:
    """(granularity, featureset) of a chat that asked for an explanation, else None."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    explain = req.get("explain") if isinstance(req, dict) else None
    if not isinstance(explain, dict):
        return None
    return str(explain.get("granularity", "sentence")), str(explain.get("features") or featureset)


class _TargetProtocol(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_response(400, b'{"error":{"message":"bad request"}}'))
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        method = self.parser.get_method()
        self.state.requests += 1
        now = time.monotonic()
        if self.state.script.stream_tokens and b'"stream":true' in body.replace(b" ", b""):
            featureset = self.state.script.featuresets[0]
            self._stream(now, _explain(body, featureset) if b'"explain"' in body else None)
            return
        status, payload, extra, delay_s = self._route(method, self.url.split(b"?")[0].decode(), body, now)
        delay_s += self.state.stall_left_s(now)
        data = _response(status, payload, extra)
        if delay_s > 0:
            asyncio.get_running_loop().call_later(delay_s, self._write, data)
        else:
            self._write(data)

    def _stream(self, now: float, explain: tuple[str, str] | None = None) -> None:
        """One scripted SSE answer, each chunk written at its own (stall-shifted) time; with
        ``explain`` (granularity, featureset) the gateway's trace header and explanation event."""
        s, st = self.state.script, self.state
        parts = st.stream_parts
        trace_id, explain_s = None, 0.0
        if explain is not None:
            trace_id, explain_s = st.new_trace(explain[0])
            head = _STREAM_HEAD.replace(b"\r\n\r\n", b"\r\nx-trace-id: %s\r\n\r\n" % trace_id.encode())
            end = _chunk(_usage(s.stream_tokens)) + _explanation_event(trace_id, *explain) + _STREAM_END
            parts = [head + parts[0][len(_STREAM_HEAD) :], *parts[1:-1], end]
        elif not s.delay_ms and not s.token_gap_ms and not st.stall_left_s(now):
            self._write(st.stream_whole)
            return
        loop = asyncio.get_running_loop()
        at = now + s.delay_ms / 1000.0
        writes: dict[float, list[bytes]] = {}  # chunks due at one time go out in one write
        due = now
        for i, data in enumerate(parts):
            if i >= 2:  # the role chunk and the first token share the first write time
                at += s.token_gap_ms / 1000.0
            due = max(due, at + st.stall_left_s(at))  # never before an earlier chunk
            writes.setdefault(due, []).append(data)
        if trace_id is not None and explain is not None:  # admitted when the stream has ended
            st.traces[trace_id] = (due + explain_s, explain[0])
        for when, batch in writes.items():
            if when > time.monotonic():
                loop.call_at(when, self._write, b"".join(batch))
            else:
                self._write(b"".join(batch))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _route(self, method: bytes, path: str, body: bytes, now: float) -> tuple[int, bytes, bytes, float]:
        s = self.state.script
        if path in ("/healthz", "/readyz"):
            return 200, b'{"status":"ok"}', b"", 0.0
        if path == "/v1/featuresets":
            data = [{"name": n, "available": True} for n in s.featuresets]
            return 200, orjson.dumps({"object": "list", "data": data, "default": s.featuresets[0]}), b"", 0.0
        if path == "/v1/chat/completions" and method == b"POST":
            return self._chat(body, now)
        if path.startswith("/v1/traces/"):
            return self._trace(path, now)
        return 404, b'{"error":{"message":"no route","type":"not_found_error","code":"not_found"}}', b"", 0.0

    def _chat(self, body: bytes, now: float) -> tuple[int, bytes, bytes, float]:
        s, st = self.state.script, self.state
        delay_s = st.service_s(now)
        if s.error_rate and st.rng.random() < s.error_rate:
            return 500, b'{"error":{"message":"scripted failure","type":"server_error"}}', b"", delay_s
        req = orjson.loads(body) if body else {}
        answer: dict[str, object] = {
            "id": "chatcmpl-target",
            "object": "chat.completion",
            "model": "target",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
        }
        extra = b""
        explain = req.get("explain") if isinstance(req, dict) else None
        if isinstance(explain, dict):
            gran = str(explain.get("granularity", "sentence"))
            trace_id, explain_s = st.new_trace(gran)
            st.traces[trace_id] = (now + delay_s + explain_s, gran)
            answer["explanation"] = {"trace_id": trace_id, "state": "queued", "granularity": gran}
            extra = b"x-trace-id: " + trace_id.encode() + b"\r\n"
        return 200, orjson.dumps(answer), extra, delay_s

    def _trace(self, path: str, now: float) -> tuple[int, bytes, bytes, float]:
        parts = path.split("/")  # ["", "v1", "traces", id, "status"|"graph"]
        entry = self.state.traces.get(parts[3]) if len(parts) == 5 else None
        if entry is None:
            return 404, b'{"error":{"message":"unknown trace","type":"not_found_error"}}', b"", 0.0
        ready_at, gran = entry
        state = self.state.script.explain_state if now >= ready_at else "running"
        if parts[4] == "graph":
            return (
                (200, b'{"nodes":[],"edges":[]}', b"", 0.0) if state == "complete" else (202, b"{}", b"", 0.0)
            )
        status: dict[str, object] = {
            "trace_id": parts[3],
            "state": state,
            "granularity": {"requested": gran, "resolved": gran},
            "degraded": [],
            "attribution": "gradient" if state == "complete" else None,
        }
        return 200, orjson.dumps(status), b"", 0.0


class TargetServer:
    """Run the scripted target inside the current event loop."""

    def __init__(self, script: TargetScript | None = None) -> None:
        self.state = _State(script or TargetScript())
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TargetProtocol(self.state), host, port, backlog=4096)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.state.t0 = time.monotonic()
        return self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hif.harness.target", description=__doc__)
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--stall-every-s", type=float, default=0.0)
    p.add_argument("--stall-s", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--explain-ms", type=float, default=50.0)
    p.add_argument("--stream-tokens", type=int, default=64, help="content chunks of a streamed chat")
    p.add_argument("--token-gap-ms", type=float, default=0.0, help="gap between streamed chunks")
    args = p.parse_args(argv)
    script = TargetScript(
        delay_ms=args.delay_ms,
        stall_every_s=args.stall_every_s,
        stall_s=args.stall_s,
        error_rate=args.error_rate,
        explain_ms=args.explain_ms,
        stream_tokens=args.stream_tokens,
        token_gap_ms=args.token_gap_ms,
    )
    from hif.harness.client import new_event_loop

    loop = new_event_loop()
    server = TargetServer(script)
    port = loop.run_until_complete(server.start(port=args.port))
    # The stall schedule's origin in wall time, so a bench can compute each request's true latency.
    origin = time.time() - (time.monotonic() - server.state.t0)
    print(f"target listening on http://127.0.0.1:{port} stall_origin={origin:.6f}", flush=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        loop.run_until_complete(server.close())
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
