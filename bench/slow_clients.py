"""Chat latency while 500 slow-header and 100 slow-body clients hold connections to the gateway.

One ``hif gateway`` (zero-delay simulator, header and body deadlines of ``--deadline-s``), pinned to
core 1; the chat client and the attackers on core 0. Rounds alternate a quiet phase (chats only)
and an attack phase (chats while every slow connection the gateway closes is opened again at
once, so the attack is sustained); medians over the rounds are reported. Printed: the chat p95 in
each phase and their ratio, how many slow connections the gateway closed and how long each was held,
and the gateway's socket descriptors before and after.

    python bench/slow_clients.py                  # ~40 s; --server granian for the other stack
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from _bench import free_port, pin

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
CHAT = json.dumps({"model": "sim", "messages": [{"role": "user", "content": "Say something."}]}).encode()
SLOW_HEADER = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nX-Slow: "
SLOW_BODY = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n" + b'{"model":"'
)
MAX_CHATS_PER_PHASE = 200_000


@contextlib.contextmanager
def gateway(port: int, server: str, deadline_s: float, data_dir: str) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        *pin(1),
        sys.executable,
        "-m",
        "hif.cli",
        "gateway",
        "--port",
        str(port),
        "--metrics-port",
        "0",
        "--data-dir",
        data_dir,
        "--server",
        server,
        "--sim-ttft-ms",
        "0",
        "--sim-tokens-per-s",
        "0",
        "--header-timeout-s",
        str(deadline_s),
        "--body-idle-timeout-s",
        str(deadline_s),
        "--log-level",
        "warning",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "slow_clients_gateway.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).close()
                break
            time.sleep(0.2)
        else:
            raise SystemExit("gateway did not become ready; see bench/out/slow_clients_gateway.log")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def open_sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def chats(port: int, seconds: float) -> list[float]:
    """Chats back to back over one keep-alive connection for ``seconds``; latencies in ms."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    try:
        while time.perf_counter() < stop_at and len(latencies) < MAX_CHATS_PER_PHASE:
            started = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", CHAT, {"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"chat answered {resp.status} during the bench")
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        conn.close()
    return latencies


class Attack(threading.Thread):
    """Holds ``headers`` + ``bodies`` slow connections open, reopening each one the gateway closes."""

    def __init__(self, port: int, headers: int, bodies: int) -> None:
        super().__init__(daemon=True)
        self.port, self.plan = port, [SLOW_HEADER] * headers + [SLOW_BODY] * bodies
        self.stop = threading.Event()
        self.held_s: list[float] = []
        self.replies: dict[str, int] = {}
        self.sel = selectors.DefaultSelector()

    def _open(self, payload: bytes) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(payload)
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, [payload, time.monotonic(), b""])

    def run(self) -> None:
        for payload in self.plan:
            self._open(payload)
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.1):
                state = key.data
                try:
                    chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except (BlockingIOError, ConnectionResetError) as exc:
                    chunk = b"" if isinstance(exc, ConnectionResetError) else None
                if chunk is None:
                    continue
                if chunk:
                    state[2] += chunk
                    continue
                self.held_s.append(time.monotonic() - state[1])
                status = state[2][9:12].decode() or "closed without a reply"
                self.replies[status] = self.replies.get(status, 0) + 1
                self.sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                self._open(state[0])
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[94] if len(values) >= 2 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phase-s", type=float, default=6.0)
    parser.add_argument("--deadline-s", type=float, default=2.0)
    parser.add_argument("--slow-headers", type=int, default=500)
    parser.add_argument("--slow-bodies", type=int, default=100)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    if pin(0):  # the gateway has core 1 to itself
        os.sched_setaffinity(0, {0})
    port = free_port()
    quiet: list[float] = []
    attacked: list[float] = []
    attack_rounds: list[Attack] = []
    with (
        tempfile.TemporaryDirectory() as data_dir,
        gateway(port, args.server, args.deadline_s, data_dir) as gw,
    ):
        chats(port, 1.0)  # warm-up
        sockets_before = open_sockets(gw.pid)
        for _ in range(args.rounds):
            quiet.append(p95(chats(port, args.phase_s)))
            attack = Attack(port, args.slow_headers, args.slow_bodies)
            attack.start()
            attacked.append(p95(chats(port, args.phase_s)))
            attack.stop.set()
            attack.join(30)
            attack_rounds.append(attack)
        settle_at = time.monotonic() + 10
        while open_sockets(gw.pid) > sockets_before and time.monotonic() < settle_at:
            time.sleep(0.1)
        sockets_after = open_sockets(gw.pid)
    held = [s for a in attack_rounds for s in a.held_s]
    replies: dict[str, int] = {}
    for a in attack_rounds:
        for status, n in a.replies.items():
            replies[status] = replies.get(status, 0) + n
    result = {
        "server": args.server,
        "deadline_s": args.deadline_s,
        "slow_connections_held": args.slow_headers + args.slow_bodies,
        "slow_connections_closed": len(held),
        "replies": replies,
        "held_p50_s": statistics.median(held) if held else None,
        "held_max_s": max(held) if held else None,
        "sockets_before": sockets_before,
        "sockets_after": sockets_after,
        "chat_p95_ms_quiet": statistics.median(quiet),
        "chat_p95_ms_attack": statistics.median(attacked),
        "chat_p95_ratio": statistics.median(attacked) / statistics.median(quiet),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"slow_clients_{args.server}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
