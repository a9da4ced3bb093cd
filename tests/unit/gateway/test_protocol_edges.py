"""Protocol edges at the in-process ASGI app: HEAD probes, the chat body's media type, integral numbers,
and an OpenAPI document that lists what the routes answer."""

from __future__ import annotations

from typing import Any

import pytest

from hif.upstream.settings import SimulatorSettings
from hif.upstream.simulator import Simulator
from tests.unit.gateway.fakes import async_test
from tests.unit.gateway.test_app import CHAT, call, make, started


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@async_test
async def test_head_probe_answers_as_get_without_a_body(path: str) -> None:
    app, _ = make()
    await started(app)
    get, head = await call(app, "GET", path), await call(app, "HEAD", path)
    assert head.status == get.status == 200 and head.body == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))
    assert head.headers["content-type"] == "application/json"
    app._stopping = True  # not ready: the status follows GET's
    assert (await call(app, "HEAD", "/readyz")).status == (await call(app, "GET", "/readyz")).status == 503
    await app.shutdown()


@async_test
async def test_head_elsewhere_is_405_and_allow_names_head_on_probes() -> None:
    app, _ = make()
    reply = await call(app, "HEAD", "/v1/featuresets")
    assert reply.status == 405 and reply.headers["allow"] == "GET" and reply.body == b""
    reply = await call(app, "POST", "/healthz")
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (None, 200),
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/jsonx", 415),
        ("", 415),
    ],
)
@async_test
async def test_chat_body_must_be_json(content_type: str | None, status: int) -> None:
    app, _ = make()
    await started(app)
    headers = {} if content_type is None else {"content-type": content_type}
    reply = await call(app, "POST", "/v1/chat/completions", CHAT, headers)
    assert reply.status == status
    if status == 415:
        error = reply.json()["error"]
        assert error["code"] == "unsupported_media_type" and error["type"] == "invalid_request_error"
        assert error["param"] == "content-type" and "application/json" in error["message"]
    await app.shutdown()


class Recording(Simulator):
    """The simulator, remembering the bodies the gateway forwarded."""

    def __init__(self) -> None:
        super().__init__(SimulatorSettings(sim_ttft_ms=0, sim_tokens_per_s=0))
        self.bodies: list[dict[str, Any]] = []

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        return await super().complete(body)


@async_test
async def test_integer_fields_take_integral_numbers_as_json_schema_does() -> None:
    upstream = Recording()
    app, _ = make(upstream=upstream)
    await started(app)
    reply = await call(app, "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 3.0, "n": 1.0})
    assert reply.status == 200
    assert upstream.bodies[-1]["max_tokens"] == 3 and type(upstream.bodies[-1]["max_tokens"]) is int
    assert type(upstream.bodies[-1]["n"]) is int
    for bad in (1.5, "3", True):
        reply = await call(app, "POST", "/v1/chat/completions", {**CHAT, "max_tokens": bad})
        assert reply.status == 422 and reply.json()["error"]["param"] == "max_tokens"
    await app.shutdown()


@async_test
async def test_openapi_lists_what_the_routes_answer() -> None:
    app, _ = make()
    await started(app)
    doc = (await call(app, "GET", "/openapi.json")).json()
    paths = doc["paths"]
    bad_tenant = {"x-tenant-id": "not a tenant!"}
    for path, route in [
        ("/v1/featuresets", "/v1/featuresets"),
        ("/v1/traces/t1/status", "/v1/traces/{trace_id}/status"),
        ("/v1/traces/t1/graph", "/v1/traces/{trace_id}/graph"),
    ]:
        reply = await call(app, "GET", path, headers=bad_tenant)
        assert reply.status == 400 and "400" in paths[route]["get"]["responses"]
    assert "415" in paths["/v1/chat/completions"]["post"]["responses"]
    assert {"get", "head"} <= set(paths["/healthz"]) and {"get", "head"} <= set(paths["/readyz"])
    features = doc["components"]["schemas"]["Explain"]["properties"]["features"]
    assert {"type": "string", "enum": ["small"]} in features["anyOf"]  # only what is served here
    await app.shutdown()
