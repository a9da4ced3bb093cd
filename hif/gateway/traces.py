"""Trace reads and the featureset list: ``/v1/traces/{id}/status``, ``/v1/traces/{id}/graph``,
``/v1/featuresets``.

A trace of another tenant answers exactly like an unknown one (404), so ids cannot be probed.
"""

from __future__ import annotations

import re
from typing import Any

from hif.errors import GoneError, NotFoundError, StoreError
from hif.explainer import graphfile
from hif.explainer.featureset import Registry
from hif.gateway._asgi import Responder
from hif.gateway.auth import READ, Principal
from hif.gateway.interceptor import Interceptor
from hif.store.base import PENDING_STATES, BlobStore, TraceRecord, TraceState

TRACE_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class TraceHandler:
    def __init__(self, *, interceptor: Interceptor, blobs: BlobStore) -> None:
        self.interceptor, self.blobs = interceptor, blobs

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
        key = record.graph_key
        data = await self.interceptor.run_read(lambda: self.blobs.get(key)) if key else None
        if not isinstance(data, bytes):
            raise StoreError(f"graph of complete trace {trace_id} is missing from the blob store")
        await out.json(200, graphfile.decode(data))


def featureset_list(registry: Registry) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [info.public_json() for info in registry.list()],
        "default": registry.default,
    }
