"""The official openai SDK, SSE framing, attach + status, featuresets and bad input, over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest

from hif.tokens import load_tokenizer
from tests.integration._gateway_proc import CHAT, Proc, gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with gateway(tmp_path_factory.mktemp("gw"), metrics=True) as proc:
        yield proc


def client(gw: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused-in-open-mode", max_retries=0)


def test_sdk_chat_not_streamed(gw: Proc) -> None:
    completion = client(gw).chat.completions.create(model="sim", messages=CHAT["messages"])
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 24


def test_sdk_chat_streamed(gw: Proc) -> None:
    stream = client(gw).chat.completions.create(
        model="sim", messages=CHAT["messages"], stream=True, max_tokens=5
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    tokenizer = load_tokenizer("auto")  # the simulator counts max_tokens in this tokenizer's tokens
    assert tokenizer is not None and tokenizer.count([text]) == [5]


def test_attach_explain_then_status_is_queued(gw: Proc) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(
        model="sim",
        messages=CHAT["messages"],
        extra_body={"explain": {"granularity": "token", "features": "tiny"}},
    )
    completion = raw.parse()
    explanation = (completion.model_extra or {})["explanation"]
    assert raw.headers["x-trace-id"] == explanation["trace_id"]
    assert explanation["state"] == "queued" and explanation["granularity"] == "token"
    status, _, body = gw.request("GET", explanation["status_url"])
    assert status == 200
    data = orjson.loads(body)
    assert data["state"] == "queued" and data["features"] == {"requested": "tiny", "resolved": "tiny"}
    assert data["expires_at"] > data["created_at"]
    status, _, body = gw.request("GET", explanation["graph_url"])
    assert status == 202 and orjson.loads(body)["state"] == "queued"


def test_sse_framing_with_explanation_chunk(gw: Proc) -> None:
    status, headers, body = gw.request(
        "POST", "/v1/chat/completions", {**CHAT, "stream": True, "explain": {}}
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = body.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    payloads = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[-1]["explanation"]["trace_id"] == headers["x-trace-id"]


def test_featuresets_list_and_unserved_featureset_is_422(gw: Proc) -> None:
    status, _, body = gw.request("GET", "/v1/featuresets")
    listing = orjson.loads(body)
    assert status == 200 and listing["default"] == "tiny"
    assert {f["name"]: f["available"] for f in listing["data"]} == {"tiny": True, "sae-gpt4-2m": False}
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client(gw).chat.completions.create(
            model="sim", messages=CHAT["messages"], extra_body={"explain": {"features": "sae-gpt4-2m"}}
        )
    assert "available: tiny" in str(info.value)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/chat/completions", b'{"model": "sim", "messages": [', 400, "invalid_json"),
        ("POST", "/v1/chat/completions", {"model": "sim", "messages": "hi"}, 422, "invalid_value"),
        ("POST", "/v1/chat/completions", {**CHAT, "temperature": 9}, 422, "invalid_value"),
        ("POST", "/v1/chat/completions", {**CHAT, "pad": "x" * (1 << 20)}, 413, "payload_too_large"),
        ("GET", "/v1/nowhere", None, 404, "route_not_found"),
        ("DELETE", "/v1/chat/completions", None, 405, "method_not_allowed"),
        ("GET", "/v1/traces/00000000000000000000000000000000/status", None, 404, "trace_not_found"),
    ],
)
def test_bad_input_gets_an_openai_envelope(
    gw: Proc, method: str, path: str, body: object, status: int, code: str
) -> None:
    got, headers, raw = gw.request(method, path, body)
    assert got == status and headers["content-type"] == "application/json"
    error = orjson.loads(raw)["error"]
    assert error["code"] == code and error["message"] and "type" in error


def test_metrics_port_serves_gateway_metrics(gw: Proc) -> None:
    import urllib.request

    gw.request("POST", "/v1/chat/completions", CHAT)
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'gateway_requests_total{method="POST",route="/v1/chat/completions",status="200"' in text
    assert "gateway_overhead_seconds_bucket" in text and "process_cpu_seconds_total" in text


def test_openapi_and_probes(gw: Proc, tmp_path: Path) -> None:
    status, _, body = gw.request("GET", "/openapi.json")
    assert status == 200 and orjson.loads(body)["openapi"].startswith("3.")
    assert gw.request("GET", "/healthz")[0] == 200
    assert gw.request("GET", "/readyz")[0] == 200
