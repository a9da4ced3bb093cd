"""How fast the load generator is: the runner vs wrk vs Locust's FastHttpUser, one core each.

One run against one target (nginx ``return 200`` when installed, else the scripted target in
``hif.harness.target``), the target pinned to core 0 and each generator in turn pinned to core 1
with ``taskset``, all at the same number of keep-alive connections, all sending the same
request (the runner's chat POST with its JSON body):

1. wrk (C, the reference), ``apt-get install -y wrk``;
2. the load runner end to end (``python -m tests.load.load_runner``: chat POSTs, HDR histograms,
   a JSONL line per request, the live ticker), which is what a user runs;
3. the runner's chat lane alone (``hif.harness.load.lane``: the same connections and requests, with
   nothing recorded), which says how much of the runner's time its records take;
4. Locust FastHttpUser (installed by this script into bench/out/locust-venv).

Goals: runner >= 50% of wrk, runner >= 5x Locust FastHttpUser. wrk, the runner and the lane run
in interleaved rounds (medians shown, each round listed), since one noisy neighbour on a shared
VM can move a single run by 20%; Locust runs once. Prints a table and the ratios, and writes
bench/out/generator_throughput_c<connections>.json.

    python bench/generator_throughput.py                  # ~4 minutes (+ Locust's install once)
    python bench/generator_throughput.py --connections 256 --rounds 1 --skip-locust
    python bench/generator_throughput.py --stream         # streamed vs non-streamed runner

``--stream``: the runner end to end with ``--stream`` against the scripted target's fixed SSE
answer (a role-only chunk, 64 one-token content chunks, usage, ``[DONE]``, no delays), as a ratio
to the same runner non-streamed against the same target, in interleaved rounds. Goal >= 0.5.
Writes bench/out/generator_throughput_stream_c<connections>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from _bench import free_port, pin, runner_cmd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
LOCUST_VENV = OUT / "locust-venv"
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type application/json; return 200 '{{"ok":true}}'; }}
  }}
}}
"""
# Every generator sends the same request: the runner's chat POST (JSON body, stream false).
CHAT_PATH = "/v1/chat/completions"
CHAT_BODY = (
    '{"model":"sim","messages":[{"role":"user","content":"Summarise why the sky looks blue in two '
    'sentences."}],"stream":false}'
)
WRK_LUA = f"""
wrk.method = "POST"
wrk.path = "{CHAT_PATH}"
wrk.body = '{CHAT_BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
LOCUSTFILE = f"""
from locust import FastHttpUser, constant, task

class Hammer(FastHttpUser):
    wait_time = constant(0)

    @task
    def chat(self):
        self.client.post("{CHAT_PATH}", data='{CHAT_BODY}', headers={{"content-type": "application/json"}})
"""


WRK = "wrk"
RUNNER = "hif load runner (end to end)"
LANE = "hif chat lane alone (no records)"
LOCUST = "Locust FastHttpUser"


def wait_ok(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise SystemExit(f"target at {url} did not come up within {timeout_s}s")


@contextlib.contextmanager
def target(scripted: bool = False) -> Iterator[tuple[str, str, int]]:
    """The target on core 0: its URL, its name and its process id (for its CPU time in /proc)."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="hif-gen-bench-"))
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx and not scripted:
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
        cmd, name = [*pin(0), nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")], "nginx (return 200)"
    else:
        cmd = [*pin(0), sys.executable, "-m", "hif.harness.target", "--port", str(port)]
        name = "hif.harness.target (nginx not installed)"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ok(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", name, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def run_wrk(url: str, connections: int, seconds: float) -> float | None:
    if not shutil.which("wrk"):
        print("wrk not installed (apt-get install -y wrk): skipped", file=sys.stderr)
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(WRK_LUA)
    try:
        cmd = [*pin(1), "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", lua.name, url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(lua.name)
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    return float(m.group(1)) if m else None


def run_runner(url: str, connections: int, seconds: float, *extra: str) -> tuple[float, dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="hif-gen-results-") as results:
        cmd = runner_cmd(url, connections, seconds, results, "--max-tokens", "0", *extra)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode not in (0, 1, 3):
            raise SystemExit(f"load runner failed ({proc.returncode}): {proc.stderr.strip()}")
        line = json.loads(proc.stdout.strip().splitlines()[-1])
        return float(line["rps"]), line


def run_client(url: str, connections: int, seconds: float) -> float:
    cmd = [
        *pin(1),
        sys.executable,
        __file__,
        "--client-only",
        url,
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def client_only(url: str, connections: int, seconds: float) -> float:
    """The runner's chat lane without the runner's records: N connections, the same chat POST."""
    sys.path.insert(0, str(ROOT))
    from hif.harness.client import HttpClient, new_event_loop
    from hif.harness.load.lane import Lane
    from hif.harness.load.requests import ChatRequests
    from hif.harness.load.settings import LoadSettings

    class Count:  # the lane's Outcome, counting answers and nothing else
        def __init__(self, stop_at: float) -> None:
            self.stop_at, self.answers = stop_at, 0

        def take(self) -> bool:
            return time.monotonic() < self.stop_at

        def chat_done(self, *_: object) -> None:
            self.answers += 1

        def dropped(self, *_: object) -> None:
            pass

    async def main() -> float:
        settings = LoadSettings(base_url=url, max_tokens=0)
        probe = HttpClient(url)
        t0 = time.monotonic()
        count = Count(t0 + seconds)
        lane = Lane(
            requests=ChatRequests(settings.request_mix()),
            out=count,
            workers=connections,
            host=probe.host,
            port=probe.port,
            timeout_s=10,
            send_lag=lambda _ms: None,
        )
        lane.start()
        await lane.finished()  # every worker found take() False and retired
        await lane.stop()
        return count.answers / (time.monotonic() - t0)

    loop = new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def locust_binary() -> Path | None:
    binary = LOCUST_VENV / "bin" / "locust"
    if binary.exists():
        return binary
    print("installing Locust into bench/out/locust-venv ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(LOCUST_VENV)], check=True)
    proc = subprocess.run(
        [str(LOCUST_VENV / "bin" / "pip"), "install", "-q", "locust"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        print(f"Locust install failed: {proc.stderr[-500:]}", file=sys.stderr)
        return None
    return binary


def run_locust(url: str, connections: int, seconds: float) -> float | None:
    binary = locust_binary()
    if binary is None:
        return None
    with tempfile.TemporaryDirectory(prefix="hif-locust-") as tmp:
        locustfile = Path(tmp) / "locustfile.py"
        locustfile.write_text(LOCUSTFILE)
        cmd = [
            *pin(1),
            str(binary),
            "-f",
            str(locustfile),
            "--headless",
            "-u",
            str(connections),
            "-r",
            str(connections),
            "-t",
            f"{int(seconds)}s",
            "--host",
            url,
            "--only-summary",
            "--csv",
            f"{tmp}/run",
            "--loglevel",
            "ERROR",
        ]
        subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        with open(f"{tmp}/run_stats.csv") as fh:
            for row in csv.DictReader(fh):
                if row["Name"] == "Aggregated":
                    return float(row["Requests/s"])
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def stream_ratio(c: int, s: float, rounds: int) -> int:
    plain: list[float] = []
    streamed: list[float] = []
    lines: list[dict[str, object]] = []
    with target(scripted=True) as (url, name, _pid):
        for _ in range(rounds):  # interleaved: a noisy neighbour slows both, not one
            plain.append(run_runner(url, c, s)[0])
            rps, line = run_runner(url, c, s, "--stream")
            streamed.append(rps)
            lines.append(line)
    p_med, s_med = statistics.median(plain), statistics.median(streamed)
    result = {
        "target": f"{name}, streamed answer: 64 one-token SSE chunks",
        "connections": c,
        "seconds": s,
        "rounds": rounds,
        "non_streamed_req_per_s": plain,
        "streamed_req_per_s": streamed,
        "streamed_over_non_streamed": round(s_med / p_med, 3) if p_med else None,
        "streamed_runs": [
            {k: line.get(k) for k in ("p50_ms", "p99_ms", "valid", "error_rate")} for line in lines
        ],
    }
    print(f"target: {result['target']}; {c} connections, {s:g} s per run, {rounds} rounds, one core")
    print(f"runner non-streamed: median {p_med:.0f} req/s   rounds {' '.join(f'{v:.0f}' for v in plain)}")
    print(f"runner --stream:     median {s_med:.0f} req/s   rounds {' '.join(f'{v:.0f}' for v in streamed)}")
    print(f"streamed / non-streamed = {result['streamed_over_non_streamed']} (goal >= 0.5)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"generator_throughput_stream_c{c}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    p.add_argument("--skip-locust", action="store_true")
    p.add_argument("--client-only", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--stream", action="store_true", help="streamed chats/s as a ratio to non-streamed")
    args = p.parse_args()
    if args.client_only:
        print(client_only(args.client_only, args.connections, args.seconds))
        return 0
    if args.stream:
        return stream_ratio(args.connections, args.seconds, args.rounds)
    c, s = args.connections, args.seconds
    runs: dict[str, list[float | None]] = {WRK: [], RUNNER: [], LANE: [], LOCUST: []}
    lines: list[dict[str, object]] = []
    with target() as (url, name, _pid):
        # Interleaved rounds: a noisy neighbour slows one round of every tool, not one tool.
        for _ in range(args.rounds):
            runs[WRK].append(run_wrk(url, c, s))
            rps, line = run_runner(url, c, s)
            runs[RUNNER].append(rps)
            lines.append(line)
            runs[LANE].append(run_client(url, c, s))
        # Locust is ~25x slower than the runner: one run says enough.
        runs[LOCUST].append(None if args.skip_locust else run_locust(url, c, s))
    rows = {tool: median(values) for tool, values in runs.items()}
    runner, wrk, locust = rows[RUNNER], rows[WRK], rows[LOCUST]
    print(
        f"target: {name}; {c} connections, {s:g} s per run, {args.rounds} interleaved rounds, "
        "generator pinned to one core"
    )
    print(f"{'generator':<34} {'median req/s':>12}   rounds")
    for tool, rps in rows.items():
        each = " ".join("-" if v is None else f"{v:.0f}" for v in runs[tool])
        print(f"{tool:<34} {'skipped' if rps is None else f'{rps:.0f}':>12}   {each}")
    result = {
        "target": name,
        "connections": c,
        "seconds": s,
        "rounds": args.rounds,
        "req_per_s": rows,
        "runs": runs,
        "runner_over_wrk": ratio(runner, wrk),
        "lane_over_wrk": ratio(rows[LANE], wrk),
        "runner_over_locust": ratio(runner, locust),
        "runner_runs": [
            {k: line.get(k) for k in ("p50_ms", "p99_ms", "valid", "error_rate")} for line in lines
        ],
    }
    print(
        f"runner / wrk = {result['runner_over_wrk']} (goal >= 0.5); "
        f"chat lane alone / wrk = {result['lane_over_wrk']}; "
        f"runner / Locust FastHttpUser = {result['runner_over_locust']} (goal >= 5)"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"generator_throughput_c{c}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
