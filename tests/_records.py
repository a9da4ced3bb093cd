"""Jobs and trace records for the store and explainer tests: one definition, whatever backend or
service part they exercise."""

from __future__ import annotations

import time

from hif.store.base import Job, TraceRecord, TraceState


def make_job(
    trace_id: str,
    *,
    tenant: str = "alpha",
    granularity: str = "sentence",
    featureset: str = "fs",
    created_at: float | None = None,
    ttl_s: float = 60.0,
) -> Job:
    now = time.time() if created_at is None else created_at
    return Job(
        trace_id=trace_id,
        tenant=tenant,
        granularity=granularity,
        featureset=featureset,
        prompt="p",
        completion="c",
        created_at=now,
        expires_at=now + ttl_s,
        budget_s=1.5,
    )


def make_record(
    trace_id: str,
    *,
    tenant: str = "alpha",
    state: TraceState = TraceState.QUEUED,
    granularity_requested: str = "token",
    features_requested: str = "fs",
    features_resolved: str = "fs-small",
    created_at: float | None = None,
    expires_at: float | None = None,
) -> TraceRecord:
    now = time.time() if created_at is None else created_at
    return TraceRecord(
        trace_id=trace_id,
        tenant=tenant,
        state=state,
        granularity_requested=granularity_requested,
        granularity="sentence",
        features_requested=features_requested,
        features_resolved=features_resolved,
        created_at=now,
        updated_at=now,
        expires_at=now + 60 if expires_at is None else expires_at,
    )
