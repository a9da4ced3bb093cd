"""Run an ASGI app on one core: uvicorn (uvloop + httptools) or granian's embedded server.

Both stop on SIGINT/SIGTERM the same way: stop accepting, let in-flight requests finish (up to
``shutdown_timeout_s``), then run the ASGI lifespan shutdown, where the gateway flushes its
enqueue buffer. ``bench/gateway_overhead.py`` measures the two stacks against each other.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from hif.explainer.settings import FeaturesetSettings, SlaSettings
from hif.gateway.settings import GatewaySettings
from hif.http_limits import HttpLimits, raise_fd_limit
from hif.store.settings import StoreSettings
from hif.upstream.settings import SimulatorSettings

log = logging.getLogger(__name__)


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    server: str = "uvicorn",
    shutdown_timeout_s: float = 30.0,
    log_level: str = "info",
    limits: HttpLimits | None = None,
) -> None:
    """Serve ``app`` in the foreground until a stop signal; returns after a clean shutdown.

    ``limits`` sheds slow and oversized clients (see ``hif.http_limits``).
    """
    if limits is not None:
        raise_fd_limit(limits)
    if server == "granian":
        _serve_granian(app, host=host, port=port, shutdown_timeout_s=shutdown_timeout_s, limits=limits)
    else:
        _serve_uvicorn(
            app,
            host=host,
            port=port,
            shutdown_timeout_s=shutdown_timeout_s,
            log_level=log_level,
            limits=limits,
        )


def _serve_uvicorn(
    app: Any, *, host: str, port: int, shutdown_timeout_s: float, log_level: str, limits: HttpLimits | None
) -> None:
    import uvicorn

    from hif.http_limits.uvicorn import limited_protocol

    _QuietExitServer = _uvicorn_server_class()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=limited_protocol(limits) if limits else "httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        backlog=4096,
        timeout_graceful_shutdown=int(shutdown_timeout_s),
        timeout_keep_alive=30,
        server_header=False,
    )
    _QuietExitServer(config).run()


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
    app: Any, *, host: str, port: int, shutdown_timeout_s: float, limits: HttpLimits | None
) -> None:
    import uvloop
    from granian.constants import Interfaces
    from granian.server.embed import Server

    from hif.http_limits.granian import server_options

    app, options = server_options(app, limits)

    async def main() -> None:
        server = Server(
            app, address=host, port=port, interface=Interfaces.ASGI, backlog=4096, log_access=False, **options
        )
        server.workers_kill_timeout = int(shutdown_timeout_s)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    uvloop.run(main())


def run_gateway(
    settings: GatewaySettings,
    *,
    store: StoreSettings,
    sla: SlaSettings,
    featuresets: FeaturesetSettings,
    simulator: SimulatorSettings,
) -> None:
    """Open the stores, build the app, serve it (and /metrics) until SIGINT/SIGTERM, close the stores."""
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

    from hif.explainer.featureset import load_registry
    from hif.gateway.app import create_app
    from hif.metrics import serve_metrics
    from hif.store import open_stores

    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    featureset_registry = load_registry(featuresets.featuresets)
    stores = open_stores(store)
    try:
        app = create_app(
            settings,
            stores=stores,
            registry=registry,
            sla=sla,
            featuresets=featureset_registry,
            simulator=simulator,
        )
        metrics_server = (
            serve_metrics(settings.metrics_port, registry, settings.host) if settings.metrics_port else None
        )
        log.info(
            "gateway on http://%s:%d (upstream %s, metrics %s)",
            settings.host,
            settings.port,
            settings.upstream,
            settings.metrics_port or "off",
        )
        serve(
            app,
            host=settings.host,
            port=settings.port,
            server=settings.server,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            log_level=settings.log_level,
            limits=settings.http_limits(),
        )
        if metrics_server is not None:
            metrics_server.shutdown()  # type: ignore[attr-defined]
    finally:
        stores.close()
