from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from hif.errors import UpstreamTimeoutError, UpstreamUnavailableError
from hif.explainer import graphfile
from hif.explainer.featureset import FeaturesetInfo, Registry
from hif.explainer.settings import SlaSettings
from hif.gateway.app import GatewayApp, create_app
from hif.gateway.auth import KeyRing
from hif.gateway.settings import GatewaySettings
from hif.store.base import TraceState, graph_key
from hif.upstream.settings import SimulatorSettings
from hif.upstream.simulator import Simulator
from tests.unit.gateway.fakes import FakeStores, async_test

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Say hi."}]}


def registry() -> Registry:
    def info(name: str, available: bool) -> FeaturesetInfo:
        return FeaturesetInfo(
            name=name,
            description="",
            model="package:x",
            model_kind="encoder",
            layers=(1,),
            latents=64,
            k=4,
            sae_path=None,
            available=available,
            reason=None if available else "no GPU",
        )

    return Registry(
        featuresets={"small": info("small", True), "big": info("big", False)},
        default="small",
        path=Path("featuresets.toml"),
    )


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return orjson.loads(self.body)

    def events(self) -> list[bytes]:
        return [e for e in self.body.split(b"\n\n") if e]


async def call(
    app: GatewayApp,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    chunks: list[bytes] | None = None,
) -> Reply:
    raw = body if isinstance(body, bytes) else (orjson.dumps(body) if body is not None else b"")
    parts = chunks if chunks is not None else [raw]
    hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if chunks is None:
        hdrs.append((b"content-length", str(len(raw)).encode()))
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path, "headers": hdrs}, receive, send)
    start = sent[0]
    return Reply(
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


async def started(app: GatewayApp) -> None:
    app.interceptor.start()
    app._started = True


def make(
    stores: FakeStores | None = None, *, upstream: Any = None, keys: KeyRing | None = None, **settings: Any
) -> tuple[GatewayApp, CollectorRegistry]:
    reg = CollectorRegistry()
    app = create_app(
        GatewaySettings(**settings),
        stores=stores or FakeStores.new(),
        registry=reg,
        sla=SlaSettings(),
        featuresets=registry(),
        upstream=upstream or Simulator(SimulatorSettings(sim_ttft_ms=0, sim_tokens_per_s=0)),
        keys=keys or KeyRing({}, open_mode=True),
    )
    return app, reg


@async_test
async def test_chat_with_explain_returns_trace_and_status_is_queued() -> None:
    app, reg = make()
    await started(app)
    reply = await call(app, "POST", "/v1/chat/completions", {**CHAT, "explain": {"granularity": "token"}})
    assert reply.status == 200
    data = reply.json()
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["content"]
    explanation = data["explanation"]
    assert explanation["state"] == "queued" and explanation["granularity"] == "token"
    assert explanation["features"] == "small"
    assert reply.headers["x-trace-id"] == explanation["trace_id"]
    status = await call(app, "GET", explanation["status_url"])
    assert status.status == 200 and status.json()["state"] == "queued"
    assert status.json()["features"] == {"requested": "small", "resolved": "small"}
    assert reg.get_sample_value("gateway_overhead_seconds_count", {"route": "/v1/chat/completions"}) == 1
    assert (
        reg.get_sample_value(
            "gateway_requests_total",
            {"route": "/v1/chat/completions", "method": "POST", "status": "200", "tenant": "default"},
        )
        == 1
    )
    await app.shutdown()


@async_test
async def test_stream_is_sse_ending_in_done_with_explanation_chunk() -> None:
    app, _ = make()
    await started(app)
    reply = await call(app, "POST", "/v1/chat/completions", {**CHAT, "stream": True, "explain": {}})
    assert reply.status == 200 and reply.headers["content-type"] == "text/event-stream"
    events = reply.events()
    assert all(e.startswith(b"data: ") for e in events)
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    assert chunks[-1]["explanation"]["trace_id"] == reply.headers["x-trace-id"]
    await app.shutdown()


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        ({"model": "m"}, 422, "messages"),
        ({**CHAT, "messages": [{"role": "robot", "content": "x"}]}, 422, "messages.0.role"),
        ({**CHAT, "stream": "yes"}, 422, "stream"),
        ({**CHAT, "explain": {"granularity": "word"}}, 422, "explain.granularity"),
        ({**CHAT, "explain": {"features": "big"}}, 422, "explain.features"),
        ({**CHAT, "explain": {"features": "nope"}}, 422, "explain.features"),
        ([1, 2], 422, None),
    ],
)
@async_test
async def test_bad_input_is_an_envelope(body: Any, status: int, param: str | None) -> None:
    app, _ = make()
    reply = await call(app, "POST", "/v1/chat/completions", body)
    assert reply.status == status
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["param"] == param
    if param == "explain.features":
        assert "available: small" in error["message"]


@async_test
async def test_body_limit_by_header_and_by_streamed_size() -> None:
    app, _ = make(max_body_bytes=100)
    big = orjson.dumps({**CHAT, "pad": "x" * 200})
    assert (await call(app, "POST", "/v1/chat/completions", big)).status == 413
    reply = await call(app, "POST", "/v1/chat/completions", chunks=[big[:60], big[60:]])
    assert reply.status == 413 and reply.json()["error"]["code"] == "payload_too_large"


@async_test
async def test_unknown_route_and_wrong_method() -> None:
    app, _ = make()
    assert (await call(app, "GET", "/v2/nothing")).status == 404
    reply = await call(app, "GET", "/v1/chat/completions")
    assert reply.status == 405 and reply.headers["allow"] == "POST"
    assert (await call(app, "GET", "/v1/traces/abc/other")).status == 404


def keyring() -> KeyRing:
    from hif.gateway.auth import Key

    return KeyRing.from_tokens(
        {
            "sk-a": Key("user", "alpha"),
            "sk-b": Key("user", "beta"),
            "sk-r": Key("reader", "alpha"),
            "sk-admin": Key("admin", None),
        }
    )


@async_test
async def test_auth_matrix() -> None:
    app, _ = make(keys=keyring())
    await started(app)
    post = lambda h: call(app, "POST", "/v1/chat/completions", {**CHAT, "explain": {}}, h)  # noqa: E731
    assert (await post({})).status == 401
    assert (await post({"authorization": "Bearer sk-zzz"})).status == 401
    assert (await post({"authorization": "Bearer sk-r"})).status == 403
    assert (await post({"authorization": "Bearer sk-a", "x-tenant-id": "beta"})).status == 403
    ok = await post({"authorization": "Bearer sk-a", "x-tenant-id": "alpha"})
    assert ok.status == 200
    url = ok.json()["explanation"]["status_url"]
    assert (await call(app, "GET", url, headers={"authorization": "Bearer sk-r"})).status == 200
    assert (await call(app, "GET", url, headers={"authorization": "Bearer sk-b"})).status == 404
    assert (await call(app, "GET", url, headers={"authorization": "Bearer sk-admin"})).status == 200
    assert (await call(app, "GET", url)).status == 401
    assert (await call(app, "GET", "/healthz")).status == 200  # probes need no key
    assert (await call(app, "GET", "/v1/featuresets")).status == 401
    await app.shutdown()


@async_test
async def test_graphs_are_served_compressed_or_as_stored() -> None:
    """A gzip-stored graph is served as its JSON; one stored before compression, byte for byte."""
    stores = FakeStores.new()
    app, _ = make(stores)
    await started(app)
    ids = []
    for _ in range(2):
        reply = await call(app, "POST", "/v1/chat/completions", {**CHAT, "explain": {}})
        ids.append(reply.json()["explanation"]["trace_id"])
    await app.interceptor.stop(1)
    new = {"metadata": {"schema_version": 2, "slug": ids[0]}, "qParams": {}, "nodes": [], "links": []}
    old = b'{"metadata": {"schema_version": 1, "slug": "x"}, "nodes": [], "links": []}'
    stores.blobs.put(graph_key(ids[0]), graphfile.encode(new, max_bytes=10_000))
    stores.blobs.put(graph_key(ids[1]), old)
    for trace_id in ids:
        stores.state.transition(
            trace_id,
            from_states=[TraceState.QUEUED],
            to_state=TraceState.COMPLETE,
            graph_key=graph_key(trace_id),
        )
    assert (await call(app, "GET", f"/v1/traces/{ids[0]}/graph")).json() == new
    reply = await call(app, "GET", f"/v1/traces/{ids[1]}/graph")
    assert reply.status == 200 and reply.body == old and reply.json()["metadata"]["schema_version"] == 1
    await app.shutdown()


@async_test
async def test_graph_states() -> None:
    stores = FakeStores.new()
    app, _ = make(stores)
    await started(app)
    reply = await call(app, "POST", "/v1/chat/completions", {**CHAT, "explain": {}})
    trace_id = reply.json()["explanation"]["trace_id"]
    assert reply.json()["explanation"]["view_url"].startswith(f"/v1/traces/{trace_id}/view?token=")
    graph_url = f"/v1/traces/{trace_id}/graph"
    assert (await call(app, "GET", graph_url)).status == 202
    await app.interceptor.stop(1)  # flushes the buffer into the fake store
    stores.blobs.put(graph_key(trace_id), b'{"nodes": [], "edges": []}')
    stores.state.transition(
        trace_id, from_states=[TraceState.QUEUED], to_state=TraceState.COMPLETE, graph_key=graph_key(trace_id)
    )
    reply = await call(app, "GET", graph_url)
    assert reply.status == 200 and reply.json() == {"nodes": [], "edges": []}
    stores.state.transition(trace_id, from_states=[TraceState.COMPLETE], to_state=TraceState.EXPIRED)
    reply = await call(app, "GET", graph_url)
    assert reply.status == 410 and reply.json()["error"]["code"] == "expired"
    assert (await call(app, "GET", "/v1/traces/0000/graph")).status == 404


class ScriptedUpstream:
    name = "scripted"

    def __init__(self, fail_with: Exception, after_chunks: int = 0) -> None:
        self.fail_with, self.after = fail_with, after_chunks

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self.fail_with

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for i in range(self.after):
            yield {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}],
            }
            await asyncio.sleep(0)
        raise self.fail_with

    async def models(self) -> dict[str, Any]:
        raise self.fail_with

    async def aclose(self) -> None: ...


@async_test
async def test_upstream_errors_map_to_502_504() -> None:
    app, _ = make(upstream=ScriptedUpstream(UpstreamTimeoutError("slow")))
    reply = await call(app, "POST", "/v1/chat/completions", CHAT)
    assert reply.status == 504 and reply.json()["error"]["code"] == "upstream_timeout"
    app, _ = make(upstream=ScriptedUpstream(UpstreamUnavailableError("down")))
    reply = await call(app, "POST", "/v1/chat/completions", {**CHAT, "stream": True})
    assert reply.status == 502  # failed before the first chunk: a real status, not an SSE event


@async_test
async def test_failure_mid_stream_is_a_final_error_event() -> None:
    app, _ = make(upstream=ScriptedUpstream(UpstreamUnavailableError("reset"), after_chunks=2))
    reply = await call(app, "POST", "/v1/chat/completions", {**CHAT, "stream": True})
    assert reply.status == 200
    events = reply.events()
    assert len(events) == 3 and b"[DONE]" not in reply.body
    assert orjson.loads(events[-1][6:])["error"]["code"] == "upstream_unavailable"


@async_test
async def test_readiness_follows_lifespan_and_store_health() -> None:
    stores = FakeStores.new()
    app, _ = make(stores)
    assert (await call(app, "GET", "/readyz")).status == 503
    await started(app)
    assert (await call(app, "GET", "/readyz")).status == 200
    stores.outage.down = True
    app._ready_at = 0.0
    reply = await call(app, "GET", "/readyz")
    assert reply.status == 503 and "unreachable" in reply.json()["checks"]["stores"]
    stores.outage.down = False
    await app.shutdown()


@async_test
async def test_openapi_document_lists_routes() -> None:
    app, _ = make()
    doc = (await call(app, "GET", "/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert {
        "/v1/chat/completions",
        "/v1/featuresets",
        "/v1/models",
        "/v1/traces/{trace_id}/status",
        "/v1/traces/{trace_id}/graph",
    } <= set(doc["paths"])
    assert "ChatRequest" in doc["components"]["schemas"]
    assert doc["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelList"
    }


@async_test
async def test_models_lists_the_upstream_models_in_openai_format() -> None:
    app, _ = make()
    await started(app)
    reply = await call(app, "GET", "/v1/models")
    assert reply.status == 200
    assert reply.json() == {
        "object": "list",
        "data": [{"id": "sim", "object": "model", "created": 0, "owned_by": "hif"}],
    }
    await app.shutdown()
    down, _ = make(upstream=ScriptedUpstream(UpstreamUnavailableError("down")))
    await started(down)
    reply = await call(down, "GET", "/v1/models")
    assert reply.status == 502 and reply.json()["error"]["message"]  # the OpenAI error envelope
    await down.shutdown()
