"""The embedded job queue and trace-state store on one SQLite file.

Several processes share the file (the gateway enqueues, N explainer processes lease), so:

- WAL journal: readers never block the writer, and the gateway's status reads stay cheap.
- ``busy_timeout``: a writer waits for the file lock instead of failing at once.
- Every read-modify-write runs in ``BEGIN IMMEDIATE``, which takes the write lock up front, so
  two workers leasing at the same moment cannot both claim one row.
- One connection per thread (and per process: a forked child opens its own), because a
  ``sqlite3.Connection`` must not be shared across threads or a fork.

A lease is a random nonce and a deadline on the job row; a row whose deadline has passed is
handed out again with its attempt count raised, which is how a killed worker's job is retried.
Each consumer's last heartbeat is a row of ``consumers``: :meth:`SqliteJobQueue.release` and
:meth:`SqliteJobQueue.release_silent` set a dead holder's deadlines to 0, so its jobs are waiting
again at once instead of after the visibility timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hif.errors import ConfigError, StoreUnavailableError
from hif.store.base import (
    PENDING_STATES,
    BackpressureLevel,
    BackpressureSignal,
    Job,
    Lease,
    TraceRecord,
    TraceState,
)

BUSY_TIMEOUT_MS = 10_000
POLL_INTERVAL_S = 0.02  # how often a blocking lease re-checks an empty queue
BACKPRESSURE_KEY = "backpressure"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    trace_id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    seq INTEGER NOT NULL,
    lease_id TEXT,
    consumer TEXT,
    deadline REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (deadline, seq);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    expires_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_pending ON traces (state, expires_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consumers (consumer TEXT PRIMARY KEY, seen_at REAL NOT NULL);
"""


def path_from_url(url: str) -> Path:
    """SQLAlchemy's convention: ``sqlite:///rel/path.db`` is relative, ``sqlite:////abs/path.db`` absolute."""
    if not url.startswith("sqlite:///"):
        raise ConfigError("queue", f"not a sqlite URL: {url!r} (expected sqlite:///path/to/file.db)")
    rest = url.removeprefix("sqlite:///")
    if not rest:
        raise ConfigError("queue", f"sqlite URL has no path: {url!r}")
    return Path(rest)


class _Db:
    """Per-thread, per-process connections to one SQLite file, with errors translated once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create the folder of SQLite store {path}: {exc}") from exc
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            # executescript commits on its own; CREATE ... IF NOT EXISTS is safe to race.
            self.conn().executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot create SQLite schema in {path}: {exc}") from exc

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            try:
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
                )
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"cannot open SQLite store {self.path}: {exc}") from exc
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the file's write lock from its first statement."""
        conn = self.conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path} failed: {exc}") from exc

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn().execute(sql, args).fetchall())
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path} failed: {exc}") from exc

    def check(self) -> None:
        """Take and release the write lock: the file is there, readable and writable."""
        with self.tx() as conn:
            conn.execute("SELECT COUNT(*) FROM traces WHERE 0").fetchone()

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


class SqliteJobQueue:
    """:class:`~hif.store.base.JobQueue` on SQLite; safe across threads and processes."""

    def __init__(self, url_or_path: str | Path) -> None:
        path = url_or_path if isinstance(url_or_path, Path) else path_from_url(url_or_path)
        self._db = _Db(path)

    def enqueue(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        with self._db.tx() as conn:
            (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()
            conn.executemany(
                "INSERT OR IGNORE INTO jobs (trace_id, payload, created_at, seq) VALUES (?, ?, ?, ?)",
                [
                    (j.trace_id, json.dumps(j.to_dict()), j.created_at, seq + i + 1)
                    for i, j in enumerate(jobs)
                ],
            )

    def lease(
        self, consumer: str, *, max_jobs: int, visibility_timeout_s: float, block_s: float = 0.0
    ) -> list[Lease]:
        give_up = time.monotonic() + block_s
        while True:
            leases = self._try_lease(consumer, max_jobs, visibility_timeout_s)
            if leases or time.monotonic() >= give_up:
                return leases
            time.sleep(min(POLL_INTERVAL_S, max(0.0, give_up - time.monotonic())))

    def _try_lease(self, consumer: str, max_jobs: int, visibility_timeout_s: float) -> list[Lease]:
        now = time.time()
        deadline = now + visibility_timeout_s
        leases: list[Lease] = []
        # A plain read first: idle workers poll often, and taking the write lock only when there
        # is something to claim keeps them out of the gateway's way.
        if not self._db.read("SELECT 1 FROM jobs WHERE deadline <= ? LIMIT 1", (now,)):
            return leases
        with self._db.tx() as conn:
            _beat(conn, consumer, now)
            rows = conn.execute(
                "SELECT trace_id, payload, attempts FROM jobs WHERE deadline <= ? ORDER BY seq LIMIT ?",
                (now, max_jobs),
            ).fetchall()
            for trace_id, payload, attempts in rows:
                lease_id = uuid.uuid4().hex
                conn.execute(
                    "UPDATE jobs SET lease_id=?, consumer=?, deadline=?, attempts=? WHERE trace_id=?",
                    (lease_id, consumer, deadline, attempts + 1, trace_id),
                )
                job = Job.from_dict(json.loads(payload))
                leases.append(
                    Lease(
                        job=job, lease_id=lease_id, consumer=consumer, attempt=attempts + 1, deadline=deadline
                    )
                )
        return leases

    def ack(self, lease: Lease) -> None:
        # Only the current holder removes the row: a stale ack after a re-delivery leaves the job
        # to its new holder, which finds the trace terminal and acks it itself.
        with self._db.tx() as conn:
            conn.execute(
                "DELETE FROM jobs WHERE trace_id=? AND lease_id=?", (lease.job.trace_id, lease.lease_id)
            )

    def extend(self, lease: Lease, visibility_timeout_s: float) -> Lease:
        deadline = time.time() + visibility_timeout_s
        with self._db.tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET deadline=? WHERE trace_id=? AND lease_id=?",
                (deadline, lease.job.trace_id, lease.lease_id),
            )
            if cur.rowcount == 0:
                return lease  # lost the lease (re-delivered or acked): the caller's CAS decides
        return Lease(
            job=lease.job,
            lease_id=lease.lease_id,
            consumer=lease.consumer,
            attempt=lease.attempt,
            deadline=deadline,
        )

    def heartbeat(self, consumer: str) -> None:
        with self._db.tx() as conn:
            _beat(conn, consumer, time.time())

    def release(self, consumer: str) -> int:
        with self._db.tx() as conn:
            return _release(conn, consumer, time.time())

    def release_silent(self, silence_s: float, now: float | None = None) -> dict[str, int]:
        now = time.time() if now is None else now
        released: dict[str, int] = {}
        # Called every supervisor tick: take the write lock only when someone has gone silent.
        if not self._db.read("SELECT 1 FROM consumers WHERE seen_at < ? LIMIT 1", (now - silence_s,)):
            return released
        with self._db.tx() as conn:
            rows = conn.execute("SELECT consumer FROM consumers WHERE seen_at < ?", (now - silence_s,))
            for (consumer,) in rows.fetchall():
                n = _release(conn, consumer, now)
                if n:
                    released[consumer] = n
        return released

    def depth(self) -> int:
        return int(self._db.read("SELECT COUNT(*) FROM jobs WHERE deadline <= ?", (time.time(),))[0][0])

    def oldest_age_s(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        oldest = self._db.read("SELECT MIN(created_at) FROM jobs WHERE deadline <= ?", (now,))[0][0]
        if oldest is None:
            return 0.0
        return max(0.0, now - float(oldest))

    def check(self) -> None:
        self._db.check()

    def close(self) -> None:
        self._db.close()


def _beat(conn: sqlite3.Connection, consumer: str, now: float) -> None:
    conn.execute("INSERT OR REPLACE INTO consumers (consumer, seen_at) VALUES (?, ?)", (consumer, now))


def _release(conn: sqlite3.Connection, consumer: str, now: float) -> int:
    """Make ``consumer``'s live leases waiting again; the attempt count stays, so the next
    delivery is counted as a retry. Clearing ``lease_id`` turns a late ack of the old holder
    into a no-op."""
    cur = conn.execute(
        "UPDATE jobs SET deadline=0, lease_id=NULL, consumer=NULL WHERE consumer=? AND deadline > ?",
        (consumer, now),
    )
    conn.execute("DELETE FROM consumers WHERE consumer=?", (consumer,))
    return int(cur.rowcount)


class SqliteTraceStore:
    """:class:`~hif.store.base.TraceStore` on SQLite; transitions are compare-and-set."""

    def __init__(self, url_or_path: str | Path) -> None:
        path = url_or_path if isinstance(url_or_path, Path) else path_from_url(url_or_path)
        self._db = _Db(path)

    def create(self, records: Iterable[TraceRecord]) -> None:
        rows = [(r.trace_id, str(r.state), r.expires_at, json.dumps(r.to_dict())) for r in records]
        if not rows:
            return
        with self._db.tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO traces (trace_id, state, expires_at, data) VALUES (?,?,?,?)", rows
            )

    def get(self, trace_id: str) -> TraceRecord | None:
        rows = self._db.read("SELECT data FROM traces WHERE trace_id=?", (trace_id,))
        return TraceRecord.from_dict(json.loads(rows[0][0])) if rows else None

    def transition(
        self,
        trace_id: str,
        *,
        from_states: Iterable[TraceState],
        to_state: TraceState,
        **fields: Any,
    ) -> TraceRecord | None:
        allowed = {str(s) for s in from_states}
        with self._db.tx() as conn:
            record = self._load(conn, trace_id)
            if record is None or str(record.state) not in allowed:
                return None
            return self._save(conn, record, state=to_state, **fields)

    def update(self, trace_id: str, **fields: Any) -> TraceRecord | None:
        with self._db.tx() as conn:
            record = self._load(conn, trace_id)
            if record is None or record.state.terminal:
                return None
            return self._save(conn, record, **fields)

    def expire_due(self, now: float | None = None, *, limit: int = 1000) -> list[str]:
        now = time.time() if now is None else now
        pending = [str(s) for s in PENDING_STATES]
        expired: list[str] = []
        with self._db.tx() as conn:
            rows = conn.execute(
                f"SELECT data FROM traces WHERE state IN ({','.join('?' * len(pending))}) "
                "AND expires_at <= ? LIMIT ?",
                (*pending, now, limit),
            ).fetchall()
            for (data,) in rows:
                record = TraceRecord.from_dict(json.loads(data))
                reason = record.reason or "ttl: not finished before expires_at"
                self._save(conn, record, state=TraceState.EXPIRED, reason=reason, updated_at=now)
                expired.append(record.trace_id)
        return expired

    def counts(self) -> dict[str, int]:
        counts = {str(s): 0 for s in TraceState}
        for state, n in self._db.read("SELECT state, COUNT(*) FROM traces GROUP BY state"):
            counts[state] = int(n)
        return counts

    def publish_backpressure(self, signal: BackpressureSignal) -> None:
        value = json.dumps(
            {"level": int(signal.level), "reason": signal.reason, "updated_at": signal.updated_at}
        )
        with self._db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (BACKPRESSURE_KEY, value))

    def read_backpressure(self) -> BackpressureSignal | None:
        rows = self._db.read("SELECT value FROM meta WHERE key=?", (BACKPRESSURE_KEY,))
        if not rows:
            return None
        data = json.loads(rows[0][0])
        return BackpressureSignal(
            level=BackpressureLevel(int(data["level"])),
            reason=str(data["reason"]),
            updated_at=float(data["updated_at"]),
        )

    def check(self) -> None:
        self._db.check()

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _load(conn: sqlite3.Connection, trace_id: str) -> TraceRecord | None:
        row = conn.execute("SELECT data FROM traces WHERE trace_id=?", (trace_id,)).fetchone()
        return TraceRecord.from_dict(json.loads(row[0])) if row else None

    @staticmethod
    def _save(conn: sqlite3.Connection, record: TraceRecord, **fields: Any) -> TraceRecord:
        data = record.to_dict()
        data.update(fields)
        if "updated_at" not in fields:
            data["updated_at"] = time.time()
        new = TraceRecord.from_dict(data)
        conn.execute(
            "UPDATE traces SET state=?, expires_at=?, data=? WHERE trace_id=?",
            (str(new.state), new.expires_at, json.dumps(new.to_dict()), new.trace_id),
        )
        return new
