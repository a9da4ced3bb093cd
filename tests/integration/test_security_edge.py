"""Security at the edge over real sockets: hashed keys, SIGHUP revocation, protected mode, TLS.

Gateways run as real ``hif gateway`` processes on free ports (``_gateway_proc``); a refused
start-up is a process that exits 2 with one line on stderr.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hif.gateway.keys import add_key
from tests.conftest import free_port, wait_until
from tests.integration._gateway_proc import CHAT, Proc, gateway, write_featuresets
from tests.integration._procs import Process, hif_cmd, running

REFUSE_TIMEOUT_S = 30


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def log_of(tmp: Path, gw: Proc) -> str:
    return gw.proc.log()


def gateway_argv(tmp: Path, port: int, *extra: str) -> list[str]:
    return hif_cmd(
        "gateway", "--port", str(port), "--metrics-port", "0",
        "--data-dir", str(tmp / f"data-{port}"), "--featuresets", str(write_featuresets(tmp / "fs")),
        "--sim-ttft-ms", "0", "--sim-tokens-per-s", "0", *extra,
    )  # fmt: skip


def test_hashed_key_works_and_sighup_revokes_without_restart(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    kept, revoked = add_key(keys, role="user", tenant="alpha"), add_key(keys, role="user", tenant="alpha")
    with gateway(tmp_path, "--keys", str(keys)) as gw:
        assert gw.request("POST", "/v1/chat/completions", CHAT, bearer(revoked))[0] == 200
        text = keys.read_text()
        keys.write_text(text[: text.index("\n[keys.", 1)] + "\n")  # keep only the first entry
        assert kept not in text and revoked not in text  # only hashes on disk
        gw.proc.signal(signal.SIGHUP)
        wait_until(
            lambda: gw.request("POST", "/v1/chat/completions", CHAT, bearer(revoked))[0] == 401, timeout_s=10
        )
        assert gw.request("POST", "/v1/chat/completions", CHAT, bearer(kept))[0] == 200
        assert gw.proc.alive()
        keys.write_text("[[ not toml")  # a broken file keeps the keys in use
        gw.proc.signal(signal.SIGHUP)
        wait_until(lambda: "keys file not reloaded" in log_of(tmp_path, gw), timeout_s=10)
        assert gw.request("POST", "/v1/chat/completions", CHAT, bearer(kept))[0] == 200


def test_world_readable_keys_file_warns_naming_its_mode(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    add_key(keys, role="admin")
    keys.chmod(0o644)
    with gateway(tmp_path, "--keys", str(keys)) as gw:
        wait_until(lambda: "has mode 0o644" in log_of(tmp_path, gw), timeout_s=10)


def test_non_loopback_without_keys_refuses_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        gateway_argv(tmp_path, port, "--host", "0.0.0.0"),
        capture_output=True,
        text=True,
        timeout=REFUSE_TIMEOUT_S,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("hif: host: refusing to listen on 0.0.0.0")
    assert "--keys" in done.stderr and "--insecure-open" in done.stderr
    assert not (tmp_path / f"data-{port}").exists()  # refused before anything was opened


def test_insecure_open_starts_on_all_interfaces_with_metrics_on_loopback(tmp_path: Path) -> None:
    with gateway(tmp_path, "--host", "0.0.0.0", "--insecure-open", metrics=True) as gw:
        assert gw.request("POST", "/v1/chat/completions", CHAT)[0] == 200
        assert "listens OPEN on 0.0.0.0" in log_of(tmp_path, gw)
        listening = _listening_addresses(gw.proc.pid)
        assert ("0.0.0.0", gw.port) in listening and ("127.0.0.1", gw.metrics_port) in listening


def _listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets ``pid`` listens on, from /proc (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in inodes:  # 0A: LISTEN
            hex_ip, hex_port = local.split(":")
            ip = socket.inet_ntoa(bytes.fromhex(hex_ip)[::-1])
            found.add((ip, int(hex_port, 16)))
    return found


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def tls_gateway(tmp: Path, cert: Path, key: Path, *extra: str) -> Iterator[tuple[int, Process]]:
    port = free_port()
    argv = gateway_argv(tmp, port, "--tls-cert", str(cert), "--tls-key", str(key), *extra)
    context = ssl.create_default_context(cafile=str(cert))
    ready = functools.partial(_https_ok, f"https://127.0.0.1:{port}/readyz", context)
    with running(argv, name=f"tls-gateway-{port}", log_dir=tmp, ready=ready) as proc:
        yield port, proc


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=context) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def test_tls_serves_https_and_keys_off_loopback_without_tls_warn(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    keys = tmp_path / "keys.toml"
    token = add_key(keys, role="user", tenant="alpha")
    with tls_gateway(tmp_path, cert, key, "--keys", str(keys), "--host", "0.0.0.0") as (port, proc):
        context = ssl.create_default_context(cafile=str(cert))
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}/v1/featuresets", headers=bearer(token), method="GET"
        )
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            assert resp.status == 200
        with pytest.raises(OSError):  # plain HTTP is not spoken on a TLS listener
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert "without TLS" not in proc.log()
    with gateway(tmp_path, "--keys", str(keys), "--host", "0.0.0.0") as gw:
        wait_until(lambda: "without TLS" in log_of(tmp_path, gw), timeout_s=10)


def test_serve_with_tls_becomes_ready_and_prints_https(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    port, metrics, explainer = free_port(), free_port(), free_port()
    cmd = hif_cmd(
        "serve", "--port", str(port), "--metrics-port", str(metrics), "--explainer-metrics-port",
        str(explainer), "--data-dir", str(tmp_path / "data"), "--tls-cert", str(cert), "--tls-key", str(key),
        "--pipeline-loader", "tests.integration._fake_pipeline:load_pipeline",
    )  # fmt: skip
    env = {**os.environ, "CHAOS_CONTROL_PATH": str(tmp_path / "chaos.json")}
    with running(cmd, name="serve-tls", log_dir=tmp_path, env=env) as proc:
        proc.wait_log("hif serve: ready", timeout_s=120)
        assert f"gateway=https://127.0.0.1:{port}" in proc.log()
        context = ssl.create_default_context(cafile=str(cert))
        assert _https_ok(f"https://127.0.0.1:{port}/readyz", context)
