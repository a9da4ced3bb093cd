"""The gateway sheds slow and oversized clients while normal chats go on (deadlines set to 1 s)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import wait_until
from tests.integration._gateway_proc import CHAT, Proc, gateway
from tests.integration._slow_clients import (
    SLOW_BODY,
    SLOW_HEADER,
    Held,
    hold,
    open_sockets,
    raise_fd_limit,
    rss_bytes,
    wait_closed,
)

DEADLINE_S = 1.0
SLACK_S = 2.0  # a shared 2-core machine: timers fire late, 600 closes queue behind each other
SLOW_HEADERS, SLOW_BODIES = 500, 100
MAX_CHATS = 2_000


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    raise_fd_limit(4096)
    deadlines = ("--header-timeout-s", str(DEADLINE_S), "--body-idle-timeout-s", str(DEADLINE_S))
    with gateway(tmp_path_factory.mktemp("slow"), *deadlines) as proc:
        yield proc


@pytest.fixture(scope="module")
def gw_granian(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    raise_fd_limit(4096)
    deadlines = ("--header-timeout-s", str(DEADLINE_S), "--body-idle-timeout-s", str(DEADLINE_S))
    with gateway(tmp_path_factory.mktemp("slow-granian"), *deadlines, "--server", "granian") as proc:
        yield proc


class ChatLoop(threading.Thread):
    """Normal traffic: chats one after another over one keep-alive connection, until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.connections_opened = 0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = orjson.dumps(CHAT)
        try:
            while not self.stop.is_set() and len(self.statuses) < MAX_CHATS:
                if conn.sock is None:
                    self.connections_opened += 1
                conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                self.statuses.append(resp.status)
        finally:
            conn.close()


def test_slow_headers_and_bodies_are_closed_while_chats_go_on(gw: Proc) -> None:
    pid = gw.proc.pid
    assert gw.request("POST", "/v1/chat/completions", CHAT)[0] == 200  # warm: lazily opened files exist
    baseline = open_sockets(pid)
    chats = ChatLoop(gw.port)
    chats.start()
    held: list[Held] = [hold(gw.port, "header", SLOW_HEADER) for _ in range(SLOW_HEADERS)]
    held += [hold(gw.port, "body", SLOW_BODY) for _ in range(SLOW_BODIES)]
    wait_closed(held, timeout_s=DEADLINE_S + SLACK_S + 10)
    chats.stop.set()
    chats.join(timeout=15)

    still_open = [h for h in held if h.closed_at is None]
    assert len(still_open) == 0, f"{len(still_open)} of {len(held)} slow connections never closed"
    slowest = max(h.held_s for h in held)
    assert slowest <= DEADLINE_S + SLACK_S, f"slowest close took {slowest:.2f}s"
    assert min(h.held_s for h in held) >= DEADLINE_S * 0.9, "closed before the deadline"
    for h in held:  # a response is still possible in both cases, so each one is told why
        assert h.reply.startswith(b"HTTP/1.1 408 "), (h.kind, h.reply[:80])
        assert b'"code":"request_timeout"' in h.reply
    assert chats.statuses and set(chats.statuses) == {200}, set(chats.statuses)
    assert chats.connections_opened == 1, "the keep-alive chat connection was dropped"
    wait_until(lambda: open_sockets(pid) <= baseline, timeout_s=10)


def test_header_over_the_limit_gets_431_and_memory_stays_bounded(gw: Proc) -> None:
    pid = gw.proc.pid
    rss_before = rss_bytes(pid)
    head = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Big: "
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(head + b"a" * (8 << 20) + b"\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:80]
    assert b'"code":"request_header_fields_too_large"' in reply
    grown = rss_bytes(pid) - rss_before
    assert grown < 4 << 20, f"gateway RSS grew {grown >> 20} MiB for one oversized header"
    # Under the limit is still fine.
    status, _, _ = gw.request("GET", "/healthz", headers={"x-big": "a" * 60_000})
    assert status == 200


def test_granian_closes_slow_headers_and_bodies_and_answers_431(gw_granian: Proc) -> None:
    """granian enforces what it can (see hif.http_limits.granian): hyper drops a late head
    without a 408; the body deadline is the gateway's own and answers 408."""
    gw = gw_granian
    held = [hold(gw.port, "header", SLOW_HEADER) for _ in range(100)]
    held += [hold(gw.port, "body", SLOW_BODY) for _ in range(50)]
    wait_closed(held, timeout_s=DEADLINE_S + SLACK_S + 10)
    assert all(h.closed_at is not None for h in held)
    assert max(h.held_s for h in held) <= DEADLINE_S + SLACK_S
    assert all(h.reply.startswith(b"HTTP/1.1 408 ") for h in held if h.kind == "body")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")
    assert gw.request("POST", "/v1/chat/completions", CHAT)[0] == 200


def test_connection_that_sends_nothing_is_governed_by_keep_alive_not_header_deadline(gw: Proc) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=DEADLINE_S + SLACK_S) as sock:
        time.sleep(DEADLINE_S + 0.5)  # past the header deadline, well inside the keep-alive timeout
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
