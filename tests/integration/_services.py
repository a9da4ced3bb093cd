"""Real backing services for the distributed-mode tests: redis-server, moto's S3 server, a TCP proxy.

Each test starts what it needs on free loopback ports and polls readiness against a deadline;
nothing depends on a service CI started. Import the fixtures into a test module::

    from tests.integration._services import moto_s3, redis_server  # noqa: F401  (pytest fixtures)

``redis_server`` skips the test, naming the package to install, when ``redis-server`` is not on PATH
(and fails it under ``CI=true``). The :class:`TcpProxy` stands between a client and a service so a
test can cut the network ("S3 endpoint down") and restore it without losing the service's state.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration._procs import Process, http_ready, require_tool, start

START_TIMEOUT_S = 20.0
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def redis_binary() -> str | None:
    return shutil.which("redis-server")


def require_redis() -> str:
    return require_tool("redis-server", "redis-server")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a loopback port; ``durable`` turns on fsync-always AOF."""

    def __init__(self, workdir: Path, *, durable: bool = False, port: int | None = None) -> None:
        self.workdir = workdir
        self.durable = durable
        self.port = port or free_port()
        self.proc: Process | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            require_redis(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.proc = start(
            args,
            name="redis",
            log_dir=self.workdir,
            ready=lambda: _ping(self.port),
            timeout_s=START_TIMEOUT_S,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.stop(sig, timeout_s=10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


class MotoServer:
    """moto's standalone S3 API server (``python -m moto.server``) on a loopback port."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: Process | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            name="moto",
            log_dir=self.workdir,
            ready=http_ready(f"{self.endpoint_url}/moto-api/"),
            timeout_s=START_TIMEOUT_S,
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.stop(timeout_s=10)
        self.proc = None

    def create_bucket(self, name: str | None = None) -> str:
        import boto3

        name = name or f"hif-test-{uuid.uuid4().hex[:12]}"
        client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name


class TcpProxy:
    """Forwards a loopback port to ``target_port``; ``cut()`` drops every connection and refuses
    new ones (the service looks down), ``restore()`` listens again on the same port."""

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    start = restore

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, non-durable redis-server for one test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with fsync-always AOF: a restart keeps every acknowledged write."""
    server = RedisServer(tmp_path / "redis-aof", durable=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def aws_test_env() -> Iterator[None]:
    """Dummy AWS credentials for moto, restored afterwards."""
    saved = {k: os.environ.get(k) for k in AWS_TEST_ENV}
    os.environ.update(AWS_TEST_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto S3 server for the session (it takes a second to start); tests use fresh buckets."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    with aws_test_env():
        server.start()
        try:
            yield server
        finally:
            server.stop()
