"""HTTP/1.0 over a raw socket: a streamed answer is close-delimited, never chunked (HTTP/1.0 has no
chunked framing, so a 1.0 client would read the chunk sizes as part of the stream)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.integration._gateway_proc import CHAT, Proc, gateway


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp: Path = tmp_path_factory.mktemp(f"http10-{request.param}")
    with gateway(tmp, "--server", request.param, "--log-level", "warning") as proc:
        yield proc


def exchange(port: int, request: bytes, deadline_s: float = 20.0) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` and read until the server closes; (status line, headers, raw body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as sock:
        sock.sendall(request)
        data = bytearray()
        ends = time.monotonic() + deadline_s
        while time.monotonic() < ends:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        else:
            pytest.fail(f"the server did not close within {deadline_s} s: {bytes(data[:300])!r}")
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def chat_request(version: str, body: dict) -> bytes:
    raw = orjson.dumps(body)
    return (
        f"POST /v1/chat/completions {version}\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw


def test_http10_stream_is_close_delimited(gw: Proc) -> None:
    status, headers, body = exchange(gw.port, chat_request("HTTP/1.0", {**CHAT, "stream": True}))
    assert status.split()[1] == "200" and headers["content-type"] == "text/event-stream"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    events = [e for e in body.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events), body[:200]  # no chunk-size lines in between
    assert events[-1] == b"data: [DONE]"
    text = b"".join(
        (orjson.loads(e[6:])["choices"][0]["delta"].get("content") or "").encode() for e in events[:-1]
    )
    assert text


def test_http10_json_answer_keeps_its_length(gw: Proc) -> None:
    status, headers, body = exchange(gw.port, chat_request("HTTP/1.0", CHAT))
    assert status.split()[1] == "200" and int(headers["content-length"]) == len(body)
    assert orjson.loads(body)["object"] == "chat.completion"


def test_http11_stream_is_still_chunked(gw: Proc) -> None:
    request = chat_request("HTTP/1.1", {**CHAT, "stream": True}).replace(
        b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nConnection: close\r\n"
    )
    status, headers, body = exchange(gw.port, request)
    assert status.split()[1] == "200" and headers["transfer-encoding"] == "chunked"
    assert body.endswith(b"0\r\n\r\n")
