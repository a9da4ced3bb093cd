"""Run the gateway: open the stores, build the app, serve it and /metrics, close the stores.

The HTTP server itself (uvicorn or granian, signals, graceful shutdown) is :mod:`hif.asgi_server`,
shared with the upstream simulator.
"""

from __future__ import annotations

import logging

from hif.asgi_server import serve
from hif.config import ensure_port_free
from hif.explainer.settings import FeaturesetSettings, SlaSettings
from hif.gateway._http10 import httptools_protocol
from hif.gateway.settings import GatewaySettings
from hif.http_limits.uvicorn import limited_protocol
from hif.store.settings import StoreSettings
from hif.upstream.settings import SimulatorSettings

log = logging.getLogger(__name__)


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
    from hif.gateway.auth import check_listen_policy
    from hif.metrics import restart_counter, serve_metrics
    from hif.store import open_stores
    from hif.store.redis_buckets import open_buckets

    check_listen_policy(settings)  # before anything opens: a refused start-up leaves nothing behind
    ensure_port_free("gateway", settings.host, settings.port, "--port")
    ensure_port_free("gateway metrics", settings.metrics_host, settings.metrics_port, "--metrics-port")

    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    restart_counter(registry, "gateway")
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
            buckets=open_buckets(store.state_url()),
        )
        metrics_server = (
            serve_metrics(settings.metrics_port, registry, settings.metrics_host)
            if settings.metrics_port
            else None
        )
        tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
        limits = settings.http_limits()
        log.info(
            "gateway on %s://%s:%d (upstream %s, metrics %s)",
            "https" if tls else "http",
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
            tls=tls,
            limits=limits,
            http_protocol=httptools_protocol(limited_protocol(limits)),
        )
        if metrics_server is not None:
            metrics_server.shutdown()  # type: ignore[attr-defined]
    finally:
        stores.close()
