"""Serve an ASGI app on one core: uvicorn (uvloop + httptools) or granian's embedded server.

The gateway (``hif gateway``) and the upstream simulator (``hif upstream-sim``) both start here, so
the simulator never imports the gateway. This module sits at the bottom of the package: it imports
nothing from ``hif.gateway``, ``hif.explainer``, ``hif.store`` or ``hif.upstream``.

Both stacks stop on SIGINT/SIGTERM the same way: stop accepting, let in-flight requests finish (up
to ``shutdown_timeout_s``), then run the ASGI lifespan shutdown, where an app flushes what it holds
(the gateway its enqueue buffer). ``bench/gateway_overhead.py`` measures the two stacks against
each other; docs/design.md gives the figures behind the uvicorn default.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hif.config import SERVERS
from hif.http_limits import HttpLimits, raise_fd_limit

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    server: str = "uvicorn",
    shutdown_timeout_s: float = 30.0,
    log_level: str = "info",
    tls: tuple[Path, Path] | None = None,
    limits: HttpLimits | None = None,
    http_protocol: type | None = None,
) -> None:
    """Serve ``app`` in the foreground until a stop signal; returns after a clean shutdown.

    ``tls`` is (certificate, private key), both PEM: the listener speaks HTTPS. ``http_protocol``
    replaces uvicorn's httptools protocol class (the gateway's: slow-client limits and HTTP/1.0
    framing); granian ignores it. ``limits`` sheds slow and oversized clients (``hif.http_limits``):
    under uvicorn through ``http_protocol``, under granian through its own options.
    """
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    if limits is not None:
        raise_fd_limit(limits)
    if server == "granian":
        _serve_granian(
            app, host=host, port=port, shutdown_timeout_s=shutdown_timeout_s, tls=tls, limits=limits
        )
    else:
        _serve_uvicorn(
            app,
            host=host,
            port=port,
            shutdown_timeout_s=shutdown_timeout_s,
            log_level=log_level,
            tls=tls,
            http_protocol=http_protocol,
        )


async def run_lifespan(
    receive: Receive, send: Send, *, startup: Hook | None = None, shutdown: Hook | None = None
) -> None:
    """Answer the ASGI lifespan protocol, running ``startup``/``shutdown`` at the matching message."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup is not None:
                await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if shutdown is not None:
                await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _serve_uvicorn(
    app: Any,
    *,
    host: str,
    port: int,
    shutdown_timeout_s: float,
    log_level: str,
    tls: tuple[Path, Path] | None,
    http_protocol: type | None,
) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=http_protocol or "httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        backlog=4096,
        timeout_graceful_shutdown=int(shutdown_timeout_s),
        timeout_keep_alive=30,
        server_header=False,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    _uvicorn_server_class()(config).run()


def _uvicorn_server_class() -> type:
    import uvicorn

    class QuietExitServer(uvicorn.Server):
        """uvicorn re-raises the stop signal after a graceful shutdown (exit status -15); the
        runbook's Ctrl-C is a normal stop, so the process should exit 0 instead."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return QuietExitServer


def _serve_granian(
    app: Any,
    *,
    host: str,
    port: int,
    shutdown_timeout_s: float,
    tls: tuple[Path, Path] | None,
    limits: HttpLimits | None,
) -> None:
    import uvloop
    from granian.constants import Interfaces
    from granian.server.embed import Server

    from hif.http_limits.granian import server_options

    app, options = server_options(app, limits)

    async def main() -> None:
        server = Server(
            app,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            backlog=4096,
            log_access=False,
            ssl_cert=tls[0] if tls else None,
            ssl_key=tls[1] if tls else None,
            **options,
        )
        server.workers_kill_timeout = int(shutdown_timeout_s)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    uvloop.run(main())
