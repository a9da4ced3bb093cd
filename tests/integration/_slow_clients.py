"""Slow and oversized clients against a real gateway: raw sockets held open, and how each one ended."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import selectors
import socket
import time
from pathlib import Path

# A request whose head never ends: the last header line is left open.
SLOW_HEADER = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nX-Slow: "
)
# A complete head announcing 100 body bytes, of which 10 come.
SLOW_BODY = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n" + b'{"model":"'
)


@dataclasses.dataclass
class Held:
    """One slow connection: when its last byte went out, when the gateway closed it, what it said."""

    sock: socket.socket
    kind: str
    sent_at: float
    closed_at: float | None = None
    reply: bytes = b""

    @property
    def held_s(self) -> float:
        assert self.closed_at is not None
        return self.closed_at - self.sent_at


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def open_sockets(pid: int) -> int:
    """Socket descriptors of ``pid``: what client connections hold (the stores' per-thread SQLite
    handles grow with the thread pool, unrelated to clients, so they are not counted)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed between listing and reading
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def hold(port: int, kind: str, payload: bytes) -> Held:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(payload)
    sock.setblocking(False)
    return Held(sock, kind, time.monotonic())


def wait_closed(held: list[Held], timeout_s: float) -> None:
    """Read every socket until the gateway closes it (EOF or reset) or ``timeout_s`` passes."""
    sel = selectors.DefaultSelector()
    for h in held:
        sel.register(h.sock, selectors.EVENT_READ, h)
    deadline = time.monotonic() + timeout_s
    with contextlib.closing(sel):
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                h: Held = key.data
                try:
                    chunk = h.sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    h.reply += chunk
                    continue
                h.closed_at = time.monotonic()
                sel.unregister(h.sock)
    for h in held:
        h.sock.close()
