"""The sidecar's storage contracts: a job queue, a trace-state store and a blob store.

Every backend (SQLite and a local folder embedded; Redis Streams and S3 distributed) implements
these small synchronous interfaces. Calls are short (sub-millisecond on SQLite, one round trip on
Redis), so async callers run them on a worker thread; backends translate their own exceptions into
:class:`~hif.errors.StoreError` subclasses at one boundary.

Lifecycle of an explanation (the trace id is also the job id)::

    gateway: TraceStore.create(queued) + JobQueue.enqueue(job)      or TraceStore.create(shed)
    worker:  JobQueue.lease() -> TraceStore.transition(queued->running) -> stages
             -> BlobStore.put(graph) -> TraceStore.transition(running->complete) -> JobQueue.ack()
    gateway: TraceStore.create(rate_limited) when the key's explain_rpm is spent (no job)
    sweeper: TraceStore.expire_due(now) moves non-terminal traces past expires_at to expired
             (and the worker acks their jobs without running them)

A lease that is not acked within its visibility timeout is handed out again (a killed worker's
job is retried). Sooner when the holder's death is known: its supervisor sees its own child die
and calls ``JobQueue.release(consumer)``; every supervisor calls ``JobQueue.release_silent`` for
consumers whose heartbeat (``JobQueue.heartbeat``, sent by each worker every
``consumer_heartbeat_s``) has been silent for ``SILENT_BEATS`` intervals. Queue lag and depth
count only waiting work (never delivered, or released, or past its lease deadline), so a dead
worker's lease does not read as backlog.

``transition`` is compare-and-set so a late or duplicate worker never rewrites a terminal state
(a slow holder whose lease was taken over finishes at most once), and ``ack`` is idempotent.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


class TraceState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    EXPIRED = "expired"
    SHED = "shed"
    RATE_LIMITED = "rate_limited"  # the tenant's own explain_rpm, never sidecar overload

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {TraceState.COMPLETE, TraceState.FAILED, TraceState.EXPIRED, TraceState.SHED, TraceState.RATE_LIMITED}
)
PENDING_STATES = frozenset({TraceState.QUEUED, TraceState.RUNNING})

GRANULARITIES = ("sentence", "token")
SILENT_BEATS = 3  # missed heartbeats after which a consumer counts as dead and its leases are released


class BackpressureLevel(enum.IntEnum):
    NONE = 0
    SOFT = 1
    HARD = 2


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One explanation to run: what the Interceptor saw, and the deadline it must meet."""

    trace_id: str
    tenant: str
    granularity: str  # "sentence" | "token"
    featureset: str
    prompt: str
    completion: str
    created_at: float
    expires_at: float
    budget_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A job handed to one consumer until ``deadline`` (monotonic-free wall time)."""

    job: Job
    lease_id: str  # backend token: SQLite row lease nonce, Redis stream entry id
    consumer: str
    attempt: int  # 1 on first delivery, more when re-delivered after a crash
    deadline: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TraceRecord:
    """The state of one explanation, as ``GET /v1/traces/{id}/status`` reports it."""

    trace_id: str
    tenant: str
    state: TraceState
    granularity_requested: str
    granularity: str  # resolved: may be downgraded token -> sentence
    features_requested: str
    features_resolved: str
    created_at: float
    updated_at: float
    expires_at: float
    degraded: tuple[str, ...] = ()
    attribution: str | None = None  # "gradient" | "heuristic" once attribution ran
    error: str | None = None
    reason: str | None = None  # why shed / rate limited / expired
    stage_ms: Mapping[str, float] = dataclasses.field(default_factory=dict)
    graph_key: str | None = None
    attempts: int = 0

    def status_json(self) -> dict[str, Any]:
        """The public status body (no storage internals such as ``graph_key``)."""
        return {
            "trace_id": self.trace_id,
            "state": str(self.state),
            "granularity": {"requested": self.granularity_requested, "resolved": self.granularity},
            "features": {"requested": self.features_requested, "resolved": self.features_resolved},
            "degraded": list(self.degraded),
            "attribution": self.attribution,
            "error": self.error,
            "reason": self.reason,
            "stage_ms": dict(self.stage_ms),
            "attempts": self.attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
        }

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = str(self.state)
        data["degraded"] = list(self.degraded)
        data["stage_ms"] = dict(self.stage_ms)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["state"] = TraceState(values["state"])
        values["degraded"] = tuple(values.get("degraded") or ())
        values["stage_ms"] = dict(values.get("stage_ms") or {})
        return cls(**values)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BackpressureSignal:
    """The level the explainer fleet publishes so every gateway replica sheds alike."""

    level: BackpressureLevel
    reason: str
    updated_at: float

    def stale(self, now: float, max_age_s: float) -> bool:
        return now - self.updated_at > max_age_s


@runtime_checkable
class JobQueue(Protocol):
    def enqueue(self, jobs: Sequence[Job]) -> None:
        """Append jobs durably; raises StoreUnavailableError when the backend is down."""

    def lease(
        self, consumer: str, *, max_jobs: int, visibility_timeout_s: float, block_s: float = 0.0
    ) -> list[Lease]:
        """Hand out up to ``max_jobs``: first re-deliverable expired leases, then new jobs.

        Blocks up to ``block_s`` when nothing is ready.
        """

    def ack(self, lease: Lease) -> None:
        """Remove the job for good; acking twice or after a re-delivery is harmless."""

    def extend(self, lease: Lease, visibility_timeout_s: float) -> Lease:
        """Push the lease deadline out (long-running job heartbeat)."""

    def heartbeat(self, consumer: str) -> None:
        """Record that ``consumer`` is alive (``lease`` records it too)."""

    def release(self, consumer: str) -> int:
        """Make every live lease of ``consumer`` (known dead) waiting again; returns how many.

        The next delivery counts as a retry (its attempt is raised).
        """

    def release_silent(self, silence_s: float, now: float | None = None) -> dict[str, int]:
        """:meth:`release` every consumer not heard from for ``silence_s``; {consumer: jobs released}."""

    def depth(self) -> int:
        """Jobs waiting for a worker: not leased, released, or past their lease deadline."""

    def oldest_age_s(self, now: float | None = None) -> float:
        """Age of the oldest waiting job (see :meth:`depth`): the queue lag. 0.0 when none waits."""

    def check(self) -> None:
        """Raise StoreError naming the store if it cannot be used (called once at start-up)."""

    def close(self) -> None: ...


@runtime_checkable
class TraceStore(Protocol):
    def create(self, records: Iterable[TraceRecord]) -> None:
        """Insert new traces (the gateway batches them)."""

    def get(self, trace_id: str) -> TraceRecord | None: ...

    def transition(
        self,
        trace_id: str,
        *,
        from_states: Iterable[TraceState],
        to_state: TraceState,
        **fields: Any,
    ) -> TraceRecord | None:
        """Compare-and-set: move to ``to_state`` (updating ``fields``) only from ``from_states``.

        Returns the new record, or None when the trace is missing or in another state.
        """

    def update(self, trace_id: str, **fields: Any) -> TraceRecord | None:
        """Update non-state fields (stage_ms, degraded, ...) of a non-terminal trace."""

    def expire_due(self, now: float | None = None, *, limit: int = 1000) -> list[str]:
        """Move pending traces past their ``expires_at`` to expired; returns their ids."""

    def counts(self) -> dict[str, int]:
        """Number of traces per state."""

    def publish_backpressure(self, signal: BackpressureSignal) -> None: ...

    def read_backpressure(self) -> BackpressureSignal | None: ...

    def check(self) -> None:
        """Raise StoreError naming the store if it cannot be used (called once at start-up)."""

    def close(self) -> None: ...


@runtime_checkable
class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, atomically and idempotently; BlobWriteError on failure."""

    def get(self, key: str) -> bytes | None: ...

    def exists(self, key: str) -> bool: ...

    def check(self) -> None:
        """Raise StoreError naming the store if it cannot be used (called once at start-up)."""

    def close(self) -> None: ...


def graph_key(trace_id: str) -> str:
    """Blob key for a trace's graph: stable, so a retried persist overwrites the same object."""
    return f"graphs/{trace_id[:2]}/{trace_id}.json"


def now_s() -> float:
    return time.time()
