"""The gateway ASGI app: routing, the error guard, request metrics and the lifespan.

>>> from prometheus_client import CollectorRegistry
>>> from hif.gateway.settings import GatewaySettings
>>> from hif.store.settings import StoreSettings
>>> from hif.store import open_stores
>>> stores = open_stores(StoreSettings())  # doctest: +SKIP
>>> app = create_app(GatewaySettings(), stores=stores, registry=CollectorRegistry())  # doctest: +SKIP

Everything the app uses is passed in (settings, stores, the Prometheus registry, optionally the
upstream); nothing is module-global, so tests build as many apps as they like.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import time
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

import orjson
from prometheus_client import CollectorRegistry

import hif
from hif.errors import NotFoundError, RequestError
from hif.explainer.features import FeatureCards
from hif.explainer.featureset import Registry, load_registry
from hif.explainer.settings import SlaSettings
from hif.gateway._asgi import ClientGone, Receive, Responder, Scope, Send, header
from hif.gateway.auth import KeyRing, Principal
from hif.gateway.chat import ChatHandler
from hif.gateway.interceptor import Interceptor
from hif.gateway.limits import LocalBuckets, RateLimiter, TokenBuckets
from hif.gateway.openapi import openapi_document
from hif.gateway.settings import GatewaySettings
from hif.gateway.traces import TraceHandler, featureset_list
from hif.gateway.viewlinks import ViewLinks
from hif.metrics import GatewayMetrics, TenantLabels
from hif.store.base import BlobStore, JobQueue, TraceStore
from hif.upstream import OpenAIUpstream, Simulator, Upstream
from hif.upstream.settings import SimulatorSettings

log = logging.getLogger(__name__)
READY_CACHE_S = 1.0
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
PUBLIC_ROUTES = frozenset({"/healthz", "/readyz", "/openapi.json"})
HEAD_ROUTES = frozenset({"/healthz", "/readyz"})  # probes (load balancers) may ask with HEAD
VIEW_ROUTE = "/v1/traces/{id}/view"
FEATURE_ROUTE = "/v1/featuresets/{name}/features/{layer}/{index}"
FEATURE_PATH = re.compile(r"^/v1/featuresets/([^/]{1,128})/features/([0-9]{1,4})/([0-9]{1,9})$")
PUBLIC = Principal(role="reader", tenant="none", bound=True)  # probes and docs need no key


class StoresLike(Protocol):
    queue: JobQueue
    state: TraceStore
    blobs: BlobStore


class MethodNotAllowedError(RequestError):
    status_code = 405
    code = "method_not_allowed"

    def __init__(self, method: str, path: str, allow: str) -> None:
        super().__init__(f"{method} is not allowed on {path}; use {allow}")
        self.allow = allow


class GatewayApp:
    """The ASGI callable. Routes are a dict lookup; trace routes are parsed by hand."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        stores: StoresLike,
        keys: KeyRing,
        registry: Registry,
        upstream: Upstream,
        interceptor: Interceptor,
        metrics: GatewayMetrics,
        tenants: TenantLabels,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings, self.stores, self.keys = settings, stores, keys
        self.upstream, self.interceptor, self.metrics, self.tenants = upstream, interceptor, metrics, tenants
        self.limiter = limiter
        links = ViewLinks(
            settings.view_secret.encode() if settings.view_secret else None, ttl_s=settings.view_link_ttl_s
        )
        self.chat = ChatHandler(
            upstream=upstream,
            interceptor=interceptor,
            registry=registry,
            metrics=metrics,
            max_body_bytes=settings.max_body_bytes,
            limiter=limiter,
            links=links,
        )
        self.traces = TraceHandler(
            interceptor=interceptor, blobs=stores.blobs, links=links, cards=FeatureCards(registry)
        )
        self._featuresets = orjson.dumps(featureset_list(registry))
        self._openapi = orjson.dumps(openapi_document(hif.__version__, registry.available_names()))
        self._started = self._stopping = False
        self._ready_at = 0.0
        self._ready_error: str | None = "starting"
        self._children: dict[tuple[str, str, int, str], tuple[Any, Any, Any]] = {}
        self._table: dict[str, tuple[str, Any]] = {
            "/v1/chat/completions": ("POST", self._chat),
            "/v1/featuresets": ("GET", self._list_featuresets),
            "/v1/models": ("GET", self._list_models),
            "/healthz": ("GET", self._healthz),
            "/readyz": ("GET", self._readyz),
            "/openapi.json": ("GET", self._openapi_json),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # --- the error guard and metrics -------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        out = Responder(_bodiless(send) if scope["method"] == "HEAD" else send)
        route, tenant = "unmatched", "none"
        self.metrics.in_flight.inc()
        try:
            route, handler, arg = self._route(scope["method"], scope["path"])
            who = PUBLIC if route in PUBLIC_ROUTES or _by_link(route, scope) else self._who(scope)
            tenant = self.tenants.label(who.tenant) if who is not PUBLIC else "none"
            await handler(scope, receive, out, who, arg)
        except ClientGone:
            out.status = 499  # nginx's "client closed request": recorded, nothing sent
        except Exception as exc:  # the outermost guard: client errors as envelopes, the rest a 500
            if not isinstance(exc, RequestError):
                log.log(
                    logging.WARNING if out.status or _expected(exc) else logging.ERROR,
                    "%s %s failed: %s",
                    scope["method"],
                    scope["path"],
                    exc,
                    exc_info=not _expected(exc),
                )
            if not out.started:
                await out.error(exc)
        finally:
            self.metrics.in_flight.dec()
            method = scope["method"] if scope["method"] in METHODS else "OTHER"  # bounded label
            self._observe(route, method, out, tenant, time.perf_counter() - started)

    def _observe(self, route: str, method: str, out: Responder, tenant: str, elapsed_s: float) -> None:
        key = (route, method, out.status, tenant)
        children = self._children.get(key)
        if children is None:
            # labels() takes a lock and builds a tuple on every call; the label sets are bounded
            # (routes x methods x statuses x tenant labels), so the children are cached.
            status = str(out.status)
            children = self._children[key] = (
                self.metrics.requests.labels(route, method, status, tenant),
                self.metrics.request_duration.labels(route, status, tenant),
                self.metrics.overhead.labels(route),
            )
        children[0].inc()
        children[1].observe(elapsed_s)
        if out.upstream_s is not None:
            children[2].observe(max(0.0, elapsed_s - out.upstream_s))

    def _who(self, scope: Scope) -> Principal:
        return self.keys.authenticate(header(scope, b"authorization"), header(scope, b"x-tenant-id"))

    # --- routing ---------------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, Any, str]:
        route: str = path
        arg: Any = ""
        entry = self._table.get(path)
        if entry is None and path.startswith("/v1/traces/"):
            trace_id, _, leaf = path[len("/v1/traces/") :].partition("/")
            handlers = {"status": self._trace_status, "graph": self._trace_graph, "view": self._trace_view}
            if leaf in handlers and trace_id:
                route, arg = f"/v1/traces/{{id}}/{leaf}", trace_id
                entry = ("GET", handlers[leaf])
        elif entry is None and (match := FEATURE_PATH.match(path)):
            route, arg = FEATURE_ROUTE, match.groups()
            entry = ("GET", self._feature)
        if entry is None:
            raise NotFoundError(f"no route {path}", code="route_not_found")
        allowed, handler = entry
        if method != allowed and not (method == "HEAD" and route in HEAD_ROUTES):
            raise MethodNotAllowedError(
                method, route, f"{allowed}, HEAD" if route in HEAD_ROUTES else allowed
            )
        return route, handler, arg

    async def _chat(self, scope: Scope, receive: Receive, out: Responder, who: Principal, _: str) -> None:
        await self.chat(scope, receive, out, who)

    async def _trace_status(
        self, scope: Scope, receive: Receive, out: Responder, who: Principal, trace_id: str
    ) -> None:
        await self.traces.status(trace_id, out, who)

    async def _trace_graph(
        self, scope: Scope, receive: Receive, out: Responder, who: Principal, trace_id: str
    ) -> None:
        await self.traces.graph(trace_id, out, who)

    async def _trace_view(
        self, scope: Scope, receive: Receive, out: Responder, who: Principal, trace_id: str
    ) -> None:
        await self.traces.view(trace_id, query(scope).get("token"), out)

    async def _feature(
        self, scope: Scope, receive: Receive, out: Responder, who: Principal, arg: tuple[str, str, str]
    ) -> None:
        name, layer, index = arg
        await self.traces.feature((unquote(name), int(layer), int(index)), query(scope), out, who)

    async def _list_featuresets(
        self, scope: Scope, receive: Receive, out: Responder, who: Principal, _: str
    ) -> None:
        await out.json(200, self._featuresets)

    async def _list_models(
        self, scope: Scope, receive: Receive, out: Responder, who: Principal, _: str
    ) -> None:
        # OpenAI clients (GuideLLM, LangChain, Open WebUI) ask this first; the models are the upstream's.
        await out.json(200, orjson.dumps(await self.upstream.models()))

    async def _openapi_json(
        self, scope: Scope, receive: Receive, out: Responder, who: Principal, _: str
    ) -> None:
        await out.json(200, self._openapi)

    async def _healthz(self, scope: Scope, receive: Receive, out: Responder, who: Principal, _: str) -> None:
        await out.json(200, {"status": "ok"})

    async def _readyz(self, scope: Scope, receive: Receive, out: Responder, who: Principal, _: str) -> None:
        error = await self.readiness()
        checks = {"stores": error or "ok", "enqueue_buffer": self.interceptor.buffered}
        await out.json(503 if error else 200, {"status": "not ready" if error else "ready", "checks": checks})

    async def readiness(self) -> str | None:
        """None when ready; else why not. Store probes are cached for a second."""
        if not self._started or self._stopping:
            return "stopping" if self._stopping else "starting"
        if self.interceptor.store_error is not None:
            return f"store writes failing: {self.interceptor.store_error}"
        if time.monotonic() - self._ready_at > READY_CACHE_S:
            try:
                await self.interceptor.run_read(self._probe_stores)
                self._ready_error = None
            except Exception as exc:  # any failure means "not ready", never a 500
                self._ready_error = f"stores unreachable: {exc}"
            self._ready_at = time.monotonic()
        return self._ready_error

    def _probe_stores(self) -> None:
        self.stores.state.get("readyz-probe")
        self.stores.queue.oldest_age_s()
        self.stores.blobs.exists("readyz-probe")
        if self.settings.require_explainer:
            # The explainer supervisor republishes its backpressure signal every tick, and only once
            # a worker has loaded its pipeline: a fresh signal is its heartbeat.
            signal = self.stores.state.read_backpressure()
            if signal is None or signal.stale(time.time(), self.settings.backpressure_stale_s):
                raise RuntimeError("explainer not ready (no fresh heartbeat in the trace store)")

    # --- lifespan --------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.interceptor.start()
                self._watch_sighup(True)
                self._started = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        """Flush the enqueue buffer and close the upstream (the server already drained requests)."""
        self._stopping = True
        self._watch_sighup(False)
        await self.interceptor.stop(self.settings.shutdown_timeout_s)
        self.interceptor.close()
        await self.upstream.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()

    def _watch_sighup(self, on: bool) -> None:
        """SIGHUP reloads the keys file (revoking a key needs no restart)."""
        if self.keys.path is None:
            return
        loop = asyncio.get_running_loop()
        # Only the main thread may own signals; an app driven from a test thread simply has no
        # SIGHUP reload (it can call keys.reload() itself).
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            if on:
                loop.add_signal_handler(signal.SIGHUP, self.keys.reload)
            else:
                loop.remove_signal_handler(signal.SIGHUP)


def _bodiless(send: Send) -> Send:
    """HEAD: the GET's status and headers (its content-length included), none of its body bytes."""

    async def head(message: dict[str, Any]) -> None:
        await send({**message, "body": b""} if message["type"] == "http.response.body" else message)

    return head


def _expected(exc: BaseException) -> bool:
    """Errors that are part of normal operation (upstream or store trouble): no traceback."""
    from hif.errors import HifError

    return isinstance(exc, HifError)


def create_app(
    settings: GatewaySettings,
    *,
    stores: StoresLike,
    registry: CollectorRegistry,
    sla: SlaSettings | None = None,
    featuresets: Registry | None = None,
    simulator: SimulatorSettings | None = None,
    upstream: Upstream | None = None,
    keys: KeyRing | None = None,
    buckets: TokenBuckets | None = None,
) -> GatewayApp:
    """Build the gateway ASGI app from settings and already-open stores.

    ``buckets`` holds the per-key limits: shared ones in distributed mode
    (:func:`hif.store.redis_buckets.open_buckets`), else this process's own.
    """
    metrics = GatewayMetrics(registry)
    tenants = TenantLabels(settings.max_tenant_labels)
    if keys is None:
        keys = KeyRing.from_file(settings.keys) if settings.keys else KeyRing.open()
    interceptor = Interceptor(
        queue=stores.queue,
        state=stores.state,
        sla=sla or SlaSettings(),
        metrics=metrics,
        tenants=tenants,
        buffer_jobs=settings.enqueue_buffer_jobs,
        batch_jobs=settings.enqueue_batch_jobs,
        backpressure_refresh_s=settings.backpressure_refresh_s,
        backpressure_stale_s=settings.backpressure_stale_s,
    )
    return GatewayApp(
        settings=settings,
        stores=stores,
        keys=keys,
        registry=featuresets or load_registry(),
        upstream=upstream or open_upstream(settings, simulator or SimulatorSettings()),
        interceptor=interceptor,
        metrics=metrics,
        tenants=tenants,
        limiter=RateLimiter(buckets or LocalBuckets(), registry, settings.max_tenant_labels),
    )


def open_upstream(settings: GatewaySettings, sim: SimulatorSettings) -> Upstream:
    """The gateway's upstream: ``--upstream sim`` is the in-process simulator; a URL a pooled client."""
    if settings.upstream == "sim":
        return Simulator(sim)
    return OpenAIUpstream(
        settings.upstream,
        api_key=settings.upstream_api_key,
        timeout_s=settings.upstream_timeout_s,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        max_connections=settings.upstream_max_connections,
    )


def query(scope: Scope) -> dict[str, str]:
    """The query string's parameters, the first value of each."""
    raw = scope.get("query_string") or b""
    return {k: v[0] for k, v in parse_qs(raw.decode("latin-1"), keep_blank_values=True).items()}


def _by_link(route: str, scope: Scope) -> bool:
    """Viewer pages open with a signed link's token instead of a key (the handler checks it)."""
    return route == VIEW_ROUTE or (route == FEATURE_ROUTE and "token" in query(scope))
