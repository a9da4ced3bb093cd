"""Jobs and trace records for the store tests: one definition, whatever backend they exercise."""

from __future__ import annotations

import time

from hif.store.base import Job, TraceRecord, TraceState


def make_job(trace_id: str, *, created_at: float | None = None, ttl_s: float = 60.0) -> Job:
    now = time.time() if created_at is None else created_at
    return Job(
        trace_id=trace_id,
        tenant="alpha",
        granularity="sentence",
        featureset="fs",
        prompt="p",
        completion="c",
        created_at=now,
        expires_at=now + ttl_s,
        budget_s=1.5,
    )


def make_record(
    trace_id: str,
    *,
    state: TraceState = TraceState.QUEUED,
    expires_at: float | None = None,
) -> TraceRecord:
    now = time.time()
    return TraceRecord(
        trace_id=trace_id,
        tenant="alpha",
        state=state,
        granularity_requested="token",
        granularity="sentence",
        features_requested="fs",
        features_resolved="fs-small",
        created_at=now,
        updated_at=now,
        expires_at=now + 60 if expires_at is None else expires_at,
    )
