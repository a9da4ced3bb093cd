"""The gateway in front of `hif upstream-sim` over HTTP: errors as 502 envelopes, graceful stop."""

from __future__ import annotations

import http.client
import signal
import threading
import time
from pathlib import Path

import openai
import orjson

from hif.store import open_stores
from hif.store.base import BackpressureLevel, BackpressureSignal
from hif.store.settings import StoreSettings
from hif.tokens import load_tokenizer
from tests.conftest import free_port, wait_until
from tests.integration._gateway_proc import CHAT, gateway, upstream_sim


def test_sdk_through_gateway_to_http_simulator(tmp_path: Path) -> None:
    with upstream_sim(tmp_path) as sim, gateway(tmp_path, "--upstream", f"{sim.url}/v1") as gw:
        sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        reply = sdk.chat.completions.create(model="sim", messages=CHAT["messages"], max_tokens=7)
        assert reply.usage is not None and reply.usage.completion_tokens == 7
        stream = sdk.chat.completions.create(
            model="sim", messages=CHAT["messages"], stream=True, max_tokens=4
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        tokenizer = load_tokenizer("auto")  # the simulator counts max_tokens in this tokenizer's tokens
        assert tokenizer is not None and tokenizer.count([text]) == [4]


def test_upstream_failures_become_502_envelopes(tmp_path: Path) -> None:
    with (
        upstream_sim(tmp_path, "--sim-429-rate", "1") as sim,
        gateway(tmp_path, "--upstream", f"{sim.url}/v1") as gw,
    ):
        for body in (CHAT, {**CHAT, "stream": True}):
            status, _, raw = gw.request("POST", "/v1/chat/completions", body)
            error = orjson.loads(raw)["error"]
            assert status == 502 and error["type"] == "upstream_error" and "429" in error["message"]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with gateway(tmp_path, "--upstream", dead, "--upstream-connect-timeout-s", "1") as gw:
        status, _, raw = gw.request("POST", "/v1/chat/completions", CHAT)
        assert status == 502 and orjson.loads(raw)["error"]["code"] == "upstream_unavailable"


def test_sigterm_finishes_in_flight_stream_flushes_jobs_and_exits_0(tmp_path: Path) -> None:
    # A slow simulator: the stream is still running when SIGTERM arrives.
    with gateway(
        tmp_path,
        "--sim-ttft-ms",
        "300",
        "--sim-tokens-per-s",
        "40",
        "--sim-ttft-jitter",
        "0",
        "--sim-tokens-per-s-jitter",
        "0",
    ) as gw:
        result: dict[str, bytes] = {}

        def stream() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
            body = orjson.dumps({**CHAT, "stream": True, "max_tokens": 20, "explain": {}})
            conn.request(
                "POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"}
            )
            result["body"] = conn.getresponse().read()
            conn.close()

        worker = threading.Thread(target=stream)
        worker.start()
        time.sleep(0.2)
        assert gw.stop(signal.SIGTERM) == 0
        worker.join(10)
        data_dir = gw.data_dir
    assert result["body"].endswith(b"data: [DONE]\n\n")
    trace_id = orjson.loads(result["body"].split(b"\n\n")[-3].removeprefix(b"data: "))["explanation"][
        "trace_id"
    ]
    with open_stores(StoreSettings(data_dir=data_dir)) as stores:
        record = stores.state.get(trace_id)
        assert record is not None and record.state == "queued"
        assert stores.queue.depth() == 1


def test_hard_backpressure_sheds_but_chat_answers_200(tmp_path: Path) -> None:
    with gateway(tmp_path, "--backpressure-refresh-s", "0.05") as gw:
        with open_stores(StoreSettings(data_dir=gw.data_dir)) as stores:
            signal_ = BackpressureSignal(
                level=BackpressureLevel.HARD, reason="queue lag 12s", updated_at=time.time()
            )
            stores.state.publish_backpressure(signal_)

        def shed() -> bool:
            status, _, raw = gw.request("POST", "/v1/chat/completions", {**CHAT, "explain": {}})
            assert status == 200
            return bool(orjson.loads(raw)["explanation"]["state"] == "shed")

        wait_until(shed, timeout_s=10, interval_s=0.1)
        _, _, raw = gw.request("POST", "/v1/chat/completions", {**CHAT, "explain": {}})
        explanation = orjson.loads(raw)["explanation"]
        assert "queue lag 12s" in explanation["reason"]
        trace = orjson.loads(gw.request("GET", explanation["status_url"])[2])
        assert trace["state"] == "shed" and "queue lag 12s" in trace["reason"]
