"""Trace reads and the featureset list: ``/v1/traces/{id}/status``, ``/v1/traces/{id}/graph``,
``/v1/traces/{id}/view`` (the viewer page, opened by a signed link), ``/v1/featuresets`` and
``/v1/featuresets/{name}/features/{layer}/{index}`` (a feature card: JSON with a key, the feature
page with a viewer link's token).

A trace of another tenant answers exactly like an unknown one (404), so ids cannot be probed.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from hif.errors import GoneError, NotFoundError, StoreError
from hif.explainer import graphfile
from hif.explainer.features import FeatureCards
from hif.explainer.featureset import Registry
from hif.gateway import viewer
from hif.gateway._asgi import Responder
from hif.gateway.auth import READ, Principal
from hif.gateway.interceptor import Interceptor
from hif.gateway.viewlinks import ViewLinks
from hif.store.base import PENDING_STATES, BlobStore, TraceRecord, TraceState

TRACE_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class TraceHandler:
    def __init__(
        self, *, interceptor: Interceptor, blobs: BlobStore, links: ViewLinks, cards: FeatureCards
    ) -> None:
        self.interceptor, self.blobs, self.links, self.cards = interceptor, blobs, links, cards

    async def _record(self, trace_id: str, who: Principal) -> TraceRecord:
        who.require(READ)
        record = await self.interceptor.lookup(trace_id) if TRACE_ID_RE.match(trace_id) else None
        if record is None or not who.sees(record.tenant):
            raise NotFoundError(f"no trace {trace_id!r}", code="trace_not_found", param="trace_id")
        return record

    async def status(self, trace_id: str, out: Responder, who: Principal) -> None:
        record = await self._record(trace_id, who)
        await out.json(200, record.status_json())

    async def graph(self, trace_id: str, out: Responder, who: Principal) -> None:
        record = await self._record(trace_id, who)
        if record.state in PENDING_STATES:
            await out.json(202, record.status_json())
            return
        if record.state is not TraceState.COMPLETE:
            detail = record.error or record.reason or ""
            message = f"trace {trace_id} is {record.state}; it has no graph" + (
                f": {detail}" if detail else ""
            )
            raise GoneError(message, code=str(record.state), param="trace_id")
        await out.json(200, await self._graph_bytes(record))

    async def _graph_bytes(self, record: TraceRecord) -> bytes:
        key = record.graph_key
        data = await self.interceptor.run_read(lambda: self.blobs.get(key)) if key else None
        if not isinstance(data, bytes):
            raise StoreError(f"graph of complete trace {record.trace_id} is missing from the blob store")
        return graphfile.decode(data)

    async def _linked(self, trace_id: str, token: str | None) -> TraceRecord:
        """The trace a viewer link opens: signed for this trace and its tenant, not expired."""
        record = await self.interceptor.lookup(trace_id) if TRACE_ID_RE.match(trace_id) else None
        if record is None:
            raise NotFoundError(f"no trace {trace_id!r}", code="trace_not_found", param="trace_id")
        self.links.check(token, trace_id, record.tenant)
        return record

    async def view(self, trace_id: str, token: str | None, out: Responder) -> None:
        record = await self._linked(trace_id, token)
        if record.state in PENDING_STATES:
            await out.html(202, viewer.pending_page(trace_id, str(record.state)), viewer.HEADERS)
            return
        if record.state is not TraceState.COMPLETE:
            raise GoneError(f"trace {trace_id} is {record.state}; it has no graph", code=str(record.state))
        graph = orjson.loads(await self._graph_bytes(record))
        await out.html(200, viewer.graph_page(graph, trace_id, token or ""), viewer.HEADERS)

    async def feature(
        self, path: tuple[str, int, int], query: dict[str, str], out: Responder, who: Principal
    ) -> None:
        """JSON for a key holder; the HTML page for a viewer link of a trace on this featureset."""
        name, layer, index = path
        if "token" not in query:
            who.require(READ)
            await out.json(200, self.cards.card(name, layer, index))
            return
        record = await self._linked(query.get("trace", ""), query["token"])
        if record.features_resolved != name:
            raise NotFoundError(f"no featureset {name!r} for this link", code="featureset_not_found")
        await out.html(200, viewer.feature_page(self.cards.card(name, layer, index)), viewer.HEADERS)


def featureset_list(registry: Registry) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [info.public_json() for info in registry.list()],
        "default": registry.default,
    }
