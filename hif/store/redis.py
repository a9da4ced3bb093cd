"""The distributed job queue and trace-state store on Redis (``--queue/--state redis://...``).

Job queue: one Stream with one consumer group. A job is an entry (``XADD``); a lease is its
delivery to a consumer (``XREADGROUP``); ``ack`` is ``XACK`` + ``XDEL``, so the stream holds exactly
the unacked jobs. ``depth`` and ``oldest_age_s`` count only the work waiting for a worker: entries
never delivered, and leases whose deadline passed. A consumer that dies leaves its entries
pending; once they have been idle for the visibility timeout, or once the consumer is released
(its death seen by its supervisor, or its heartbeat in the ``consumers`` hash gone silent), the
next ``lease`` takes them over with ``XAUTOCLAIM``, which raises the entry's delivery counter (the
lease's ``attempt``). Each lease
keeps its own deadline in the entry's idle time (see :mod:`hif.store._redis_lua`), and ``extend``
moves it with ``XCLAIM ... IDLE ... JUSTID``.

A lease is identified by (entry id, consumer, delivery count): like the SQLite queue's nonce,
an ``ack`` or ``extend`` from a holder whose lease was re-delivered does nothing, and the new
holder finds the trace terminal (compare-and-set) and acks it itself.

Trace state: one hash per trace, each field JSON-encoded except ``state``; a Lua script does every
compare-and-set so concurrent workers and sweepers on any host see one winner. A sorted set of
``expires_at`` deadlines makes ``expire_due`` cheap, and each hash expires ``retention_s`` after its
deadline (or after it finished), so Redis does not fill. ``counts`` is derived from live data: one
sorted set per state holds its trace ids scored by their hash's expiry, and a count first drops the
members Redis has expired, so it always matches what status reads answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
from redis.exceptions import ResponseError

from hif.errors import StoreError
from hif.store import _redis_lua as lua
from hif.store._redis_client import make_client, parse_url, translate
from hif.store.base import (
    BackpressureLevel,
    BackpressureSignal,
    Job,
    Lease,
    TraceRecord,
    TraceState,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

EXPIRED_REASON = "ttl: not finished before expires_at"  # the same words as the SQLite store
_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(TraceRecord))
_PENDING_CSV = ",".join([TraceState.QUEUED, TraceState.RUNNING])
# The idle time at which a pending entry's lease has run out; also the longest visibility timeout.
LEASE_HORIZON_MS = 7 * 24 * 3600 * 1000
WAIT_SLICE_S = 0.5  # a blocking lease re-checks for expired leases this often


def _ms(t: float) -> int:
    return int(t * 1000)


class RedisJobQueue:
    """:class:`~hif.store.base.JobQueue` on a Redis Stream; shared by any number of hosts."""

    def __init__(self, url: str) -> None:
        self._opts = parse_url(url, key="queue")
        # Any: redis-py's annotations assume bytes replies, but decode_responses gives str.
        self._client: Any = make_client(self._opts)
        self._stream = self._opts.key("jobs")
        self._enqueue = self._client.register_script(lua.ENQUEUE)
        self._take_new = self._client.register_script(lua.TAKE_NEW)
        self._reclaim = self._client.register_script(lua.RECLAIM)
        self._ack = self._client.register_script(lua.ACK_IF_HELD)
        self._extend = self._client.register_script(lua.EXTEND_IF_HELD)
        self._release = self._client.register_script(lua.RELEASE)
        self._release_silent = self._client.register_script(lua.RELEASE_SILENT)
        self._waiting = self._client.register_script(lua.WAITING)
        self._consumers = self._opts.key("consumers")
        self._group_ready = False

    def enqueue(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        now = time.time()
        with translate("enqueue", self._opts, jobs=len(jobs)):
            pipe = self._client.pipeline(transaction=False)
            for job in jobs:
                # The per-trace marker makes a retried enqueue a no-op while the job is unacked.
                ttl_ms = _ms(max(job.expires_at - now, 0.0) + self._opts.retention_s)
                self._enqueue(
                    keys=[self._stream, self._opts.key("job", job.trace_id)],
                    args=[orjson.dumps(job.to_dict()), repr(job.created_at), ttl_ms],
                    client=pipe,
                )
            pipe.execute()

    def lease(
        self, consumer: str, *, max_jobs: int, visibility_timeout_s: float, block_s: float = 0.0
    ) -> list[Lease]:
        if max_jobs <= 0:
            return []
        give_up = time.monotonic() + block_s
        vt_s = visibility_timeout_s
        with translate("lease", self._opts, consumer=consumer):
            self._client.hset(self._consumers, consumer, _ms(time.time()))
            while True:
                leases, last_id = self._with_group(lambda: self._take(consumer, max_jobs, vt_s))
                remaining_s = give_up - time.monotonic()
                if leases or remaining_s <= 0:
                    return leases
                # Wake on the next XADD, but in slices: a lease deadline passing is no event.
                slice_s = min(remaining_s, WAIT_SLICE_S, self._opts.socket_timeout_s / 2)
                self._client.xread({self._stream: last_id}, count=1, block=max(1, _ms(slice_s)))

    def ack(self, lease: Lease) -> None:
        with translate("ack", self._opts, trace_id=lease.job.trace_id):
            self._with_group(
                lambda: self._ack(
                    keys=[self._stream, self._opts.key("job", lease.job.trace_id)],
                    args=[self._opts.group, lease.lease_id, lease.consumer, lease.attempt],
                )
            )

    def extend(self, lease: Lease, visibility_timeout_s: float) -> Lease:
        with translate("extend", self._opts, trace_id=lease.job.trace_id):
            idle_ms = _idle_ms(visibility_timeout_s)
            held = self._with_group(
                lambda: self._extend(
                    keys=[self._stream],
                    args=[self._opts.group, lease.lease_id, lease.consumer, lease.attempt, idle_ms],
                )
            )
        if not held:
            return lease  # lost the lease (re-delivered or acked): the caller's CAS decides
        return dataclasses.replace(lease, deadline=time.time() + visibility_timeout_s)

    def heartbeat(self, consumer: str) -> None:
        with translate("heartbeat", self._opts, consumer=consumer):
            self._client.hset(self._consumers, consumer, _ms(time.time()))

    def release(self, consumer: str) -> int:
        with translate("release", self._opts, consumer=consumer):
            return int(
                self._release(
                    keys=[self._stream, self._consumers],
                    args=[self._opts.group, consumer, LEASE_HORIZON_MS],
                )
            )

    def release_silent(self, silence_s: float, now: float | None = None) -> dict[str, int]:
        cutoff_ms = _ms((time.time() if now is None else now) - silence_s)
        with translate("release_silent", self._opts):
            flat = self._release_silent(
                keys=[self._stream, self._consumers], args=[self._opts.group, cutoff_ms, LEASE_HORIZON_MS]
            )
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return {str(name): int(n) for name, n in pairs if int(n)}

    def depth(self) -> int:
        return self._waiting_now()[0]

    def oldest_age_s(self, now: float | None = None) -> float:
        oldest = self._waiting_now()[1]
        if oldest is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - oldest)

    def _waiting_now(self) -> tuple[int, float | None]:
        with translate("waiting", self._opts):
            count, oldest = self._waiting(keys=[self._stream], args=[self._opts.group, LEASE_HORIZON_MS])
        return int(count), float(oldest) if oldest else None

    def check(self) -> None:
        _check(self._client, self._opts)

    def close(self) -> None:
        self._client.close()

    # --- internals -----------------------------------------------------------------------------

    def _with_group(self, call: Callable[[], T]) -> T:
        """Run ``call``, creating the consumer group first if Redis lost it (restart, flush)."""
        if not self._group_ready:
            self._create_group()
        try:
            return call()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("Redis lost consumer group %s on %s; recreating it", self._opts.group, self._stream)
            self._create_group()
            return call()

    def _create_group(self) -> None:
        try:
            # id 0: jobs enqueued before the first explainer started are delivered too.
            self._client.xgroup_create(self._stream, self._opts.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _take(self, consumer: str, max_jobs: int, visibility_timeout_s: float) -> tuple[list[Lease], str]:
        """One round: leases whose deadline passed first, then new entries."""
        idle_ms = _idle_ms(visibility_timeout_s)
        rows = self._reclaim(
            keys=[self._stream], args=[self._opts.group, consumer, LEASE_HORIZON_MS, max_jobs, idle_ms]
        )
        last_id = "$"
        if len(rows) < max_jobs:
            last_id, fresh = self._take_new(
                keys=[self._stream], args=[self._opts.group, consumer, max_jobs - len(rows), idle_ms]
            )
            rows += fresh
        deadline = time.time() + visibility_timeout_s
        leases = [
            self._to_lease(
                entry_id, dict(zip(flat[::2], flat[1::2], strict=True)), consumer, int(delivered), deadline
            )
            for entry_id, flat, delivered in rows
        ]
        return [le for le in leases if le is not None], last_id

    def _to_lease(
        self, entry_id: str, fields: dict[str, str], consumer: str, attempt: int, deadline: float
    ) -> Lease | None:
        try:
            job = Job.from_dict(orjson.loads(fields["job"]))
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            # A poison entry would be re-delivered forever; drop it loudly instead.
            log.error("dropping unreadable job entry %s from %s: %r", entry_id, self._stream, fields)
            self._client.xack(self._stream, self._opts.group, entry_id)
            self._client.xdel(self._stream, entry_id)
            return None
        return Lease(job=job, lease_id=entry_id, consumer=consumer, attempt=attempt, deadline=deadline)


def _idle_ms(visibility_timeout_s: float) -> int:
    """The idle time that makes a lease reach LEASE_HORIZON_MS after ``visibility_timeout_s``."""
    return max(0, LEASE_HORIZON_MS - _ms(max(visibility_timeout_s, 0.0)))


class RedisTraceStore:
    """:class:`~hif.store.base.TraceStore` on Redis hashes; transitions are atomic Lua scripts."""

    def __init__(self, url: str) -> None:
        self._opts = parse_url(url, key="state")
        self._client: Any = make_client(self._opts)
        self._deadlines = self._opts.key("deadlines")
        self._state_sets = [self._opts.key("state", name) for name in lua.STATES]
        self._create = self._client.register_script(lua.CREATE_TRACE)
        self._cas = self._client.register_script(lua.CAS_TRACE)
        self._expire = self._client.register_script(lua.EXPIRE_TRACE)
        self._count = self._client.register_script(lua.COUNT_TRACES)

    def create(self, records: Iterable[TraceRecord]) -> None:
        records = list(records)
        if not records:
            return
        now = time.time()
        with translate("create", self._opts, traces=len(records)):
            pipe = self._client.pipeline(transaction=False)
            for r in records:
                pending = "0" if r.state.terminal else "1"
                keep_until = _ms(max(r.expires_at, now) + self._opts.retention_s)
                self._create(
                    keys=self._keys(r.trace_id),
                    args=[r.trace_id, str(r.state), keep_until, pending, *_encode(r.to_dict())],
                    client=pipe,
                )
            pipe.execute()

    def get(self, trace_id: str) -> TraceRecord | None:
        with translate("get", self._opts, trace_id=trace_id):
            flat = self._client.hgetall(self._trace_key(trace_id))
        return _decode(flat) if flat else None

    def transition(
        self,
        trace_id: str,
        *,
        from_states: Iterable[TraceState],
        to_state: TraceState,
        **fields: Any,
    ) -> TraceRecord | None:
        allowed = ",".join(str(s) for s in from_states)
        return self._compare_and_set(trace_id, allowed, TraceState(to_state), fields)

    def update(self, trace_id: str, **fields: Any) -> TraceRecord | None:
        return self._compare_and_set(trace_id, _PENDING_CSV, None, fields)

    def expire_due(self, now: float | None = None, *, limit: int = 1000) -> list[str]:
        now = time.time() if now is None else now
        with translate("expire_due", self._opts):
            due = self._client.zrangebyscore(self._deadlines, "-inf", now, start=0, num=limit)
            if not due:
                return []
            pipe = self._client.pipeline(transaction=False)
            keep_until = _ms(now + self._opts.retention_s)
            reason = orjson.dumps(EXPIRED_REASON)
            for trace_id in due:
                args = [trace_id, repr(now), keep_until, reason]
                self._expire(keys=self._keys(trace_id), args=args, client=pipe)
            done = pipe.execute()
        return [trace_id for trace_id, moved in zip(due, done, strict=True) if moved]

    def counts(self) -> dict[str, int]:
        with translate("counts", self._opts):
            live = self._count(keys=self._state_sets)
        return {state: int(n) for state, n in zip(lua.STATES, live, strict=True)}

    def publish_backpressure(self, signal: BackpressureSignal) -> None:
        value = orjson.dumps(
            {"level": int(signal.level), "reason": signal.reason, "updated_at": signal.updated_at}
        )
        with translate("publish_backpressure", self._opts):
            self._client.set(self._opts.key("backpressure"), value)

    def read_backpressure(self) -> BackpressureSignal | None:
        with translate("read_backpressure", self._opts):
            raw = self._client.get(self._opts.key("backpressure"))
        if raw is None:
            return None
        data = orjson.loads(raw)
        return BackpressureSignal(
            level=BackpressureLevel(int(data["level"])),
            reason=str(data["reason"]),
            updated_at=float(data["updated_at"]),
        )

    def check(self) -> None:
        _check(self._client, self._opts)

    def close(self) -> None:
        self._client.close()

    # --- internals -----------------------------------------------------------------------------

    def _trace_key(self, trace_id: str) -> str:
        return self._opts.key("trace", trace_id)

    def _keys(self, trace_id: str) -> list[str]:
        return [self._trace_key(trace_id), self._deadlines, *self._state_sets]

    def _compare_and_set(
        self, trace_id: str, allowed: str, to_state: TraceState | None, fields: dict[str, Any]
    ) -> TraceRecord | None:
        refused = (set(fields) - _RECORD_FIELDS) | ({"state", "trace_id"} & set(fields))
        if refused:
            raise StoreError(f"cannot set trace fields {sorted(refused)}", trace_id=trace_id)
        now = time.time()
        fields.setdefault("updated_at", now)
        terminal = to_state is not None and to_state.terminal
        with translate("transition" if to_state else "update", self._opts, trace_id=trace_id):
            flat = self._cas(
                keys=self._keys(trace_id),
                args=[
                    trace_id,
                    allowed,
                    str(to_state or ""),
                    "1" if terminal else "0",
                    _ms(now + self._opts.retention_s),
                    *_encode(fields),
                ],
            )
        return _decode(flat) if flat else None


MIN_REDIS = (7, 0)  # the trace scripts use PEXPIRETIME


def _check(client: Any, opts: Any) -> None:
    """Reach Redis (with the URL's credentials), then make sure it runs the scripts' commands."""
    with translate("start-up check", opts):
        client.ping()
        version = str(client.info("server").get("redis_version", "0"))
    found = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if found < MIN_REDIS:
        raise StoreError(f"Redis {version} is too old: HIF needs 7.0 or newer", store=opts.safe_url)


def _encode(fields: dict[str, Any]) -> list[Any]:
    """Flatten to HSET arguments: ``state`` raw (the scripts compare it), the rest as JSON."""
    out: list[Any] = []
    for name, value in fields.items():
        if name == "state":
            continue
        out += [name, orjson.dumps(value, default=_jsonable)]
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "items"):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in a trace record")


def _decode(flat: Any) -> TraceRecord:
    pairs = dict(zip(flat[::2], flat[1::2], strict=True)) if isinstance(flat, list) else dict(flat)
    data: dict[str, Any] = {k: orjson.loads(v) for k, v in pairs.items() if k != "state"}
    data["state"] = pairs["state"]
    return TraceRecord.from_dict(data)
