"""The gateway's settings: listeners, RBAC keys, the upstream and the enqueue buffer."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from hif.config import SERVERS, option, positive
from hif.errors import ConfigError
from hif.http_limits import HttpLimits


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """The OpenAI-compatible gateway: listeners, RBAC keys, the upstream and the enqueue buffer."""

    SECTION: typing.ClassVar[str] = "gateway"

    host: str = option("127.0.0.1", help="address the gateway listens on")
    port: int = option(8080, help="gateway HTTP port")
    metrics_port: int = option(9091, help="Prometheus /metrics port (0 disables)")
    metrics_host: str = option(
        "127.0.0.1", help="address /metrics listens on (its series carry tenant labels: loopback by default)"
    )
    keys: Path | None = option(
        None, help="RBAC keys file (TOML); without it the gateway runs open, on loopback only"
    )
    insecure_open: bool = option(
        False, help="allow an open gateway (no --keys) to listen on a non-loopback --host"
    )
    tls_cert: Path | None = option(None, help="TLS certificate (PEM) to serve HTTPS; needs --tls-key")
    tls_key: Path | None = option(None, help="TLS private key (PEM) for --tls-cert")
    upstream: str = option("sim", help="`sim` (the built-in simulator) or an OpenAI-compatible base URL")
    upstream_api_key: str | None = option(None, help="bearer key sent to a URL upstream")
    upstream_timeout_s: float = option(30.0, help="total time allowed for one upstream call")
    upstream_connect_timeout_s: float = option(5.0, help="time allowed to open an upstream connection")
    upstream_max_connections: int = option(512, help="pooled keep-alive connections to a URL upstream")
    max_body_bytes: int = option(1 << 20, help="largest accepted request body")
    server: str = option("uvicorn", help="HTTP server stack", choices=SERVERS)
    enqueue_buffer_jobs: int = option(10_000, help="explanation jobs held in memory before shedding")
    enqueue_batch_jobs: int = option(256, help="largest batch the enqueue writer sends to the stores")
    backpressure_refresh_s: float = option(0.25, help="how often the backpressure signal is re-read")
    backpressure_stale_s: float = option(5.0, help="a backpressure signal older than this counts as none")
    shutdown_timeout_s: float = option(30.0, help="time allowed to finish in-flight chats and flush jobs")
    header_timeout_s: float = option(
        10.0, help="close a request whose headers are not complete this long after its first byte"
    )
    body_idle_timeout_s: float = option(10.0, help="close a request whose body stalls this long (408)")
    max_header_bytes: int = option(65536, help="largest request head, all header lines together (431)")
    max_connections: int = option(8192, help="open client connections; more are closed on accept")
    max_tenant_labels: int = option(20, help="distinct tenant metric labels before `other`")
    log_level: str = option("info", help="log level", choices=("debug", "info", "warning", "error"))
    view_secret: str | None = option(
        None,
        help="secret that signs viewer links (HIF_VIEW_SECRET); unset: a random one per process, so "
        "set one shared value when several gateways serve the same traces",
    )
    view_link_ttl_s: float = option(900.0, help="how long a signed viewer link (view_url) opens its page")
    require_explainer: bool = option(
        False, help="/readyz also waits for a fresh explainer heartbeat (set by `hif serve`)"
    )

    def __post_init__(self) -> None:
        for key in ("port", "metrics_port"):
            value = getattr(self, key)
            if not 0 <= value <= 65535:
                raise ConfigError(key, f"must be a port number 0..65535, got {value!r}")
        positive("upstream_timeout_s", self.upstream_timeout_s)
        positive("upstream_connect_timeout_s", self.upstream_connect_timeout_s)
        positive("upstream_max_connections", self.upstream_max_connections)
        positive("max_body_bytes", self.max_body_bytes)
        positive("enqueue_buffer_jobs", self.enqueue_buffer_jobs)
        positive("enqueue_batch_jobs", self.enqueue_batch_jobs)
        positive("backpressure_refresh_s", self.backpressure_refresh_s)
        positive("backpressure_stale_s", self.backpressure_stale_s)
        positive("shutdown_timeout_s", self.shutdown_timeout_s)
        positive("view_link_ttl_s", self.view_link_ttl_s)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert", "--tls-cert and --tls-key go together")
        for key in ("tls_cert", "tls_key"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ConfigError(key, f"no such file: {path}")
        positive("header_timeout_s", self.header_timeout_s)
        positive("body_idle_timeout_s", self.body_idle_timeout_s)
        positive("max_header_bytes", self.max_header_bytes)
        positive("max_connections", self.max_connections)
        if self.upstream != "sim" and not self.upstream.startswith(("http://", "https://")):
            raise ConfigError("upstream", f"must be `sim` or an http(s):// base URL, got {self.upstream!r}")

    def http_limits(self) -> HttpLimits:
        return HttpLimits(
            header_timeout_s=self.header_timeout_s,
            body_idle_timeout_s=self.body_idle_timeout_s,
            max_header_bytes=self.max_header_bytes,
            max_connections=self.max_connections,
        )

    def __repr__(self) -> str:  # settings get logged: never print the upstream's key
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.upstream_api_key:
            values["upstream_api_key"] = "***"
        if self.view_secret:
            values["view_secret"] = "***"
        return "GatewaySettings(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"
