"""Follow each attached trace to a terminal state with bounded exponential backoff.

One task per trace sleeps between polls and borrows a connection from a small pool of its own,
so polling never shares a connection (or a queue) with chat traffic. The explanation SLA is
chat answer -> the first poll that saw the terminal state; ``sla_bound_ms`` (the gap since the
last poll that still saw it pending) says how wide that measurement is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from hif.errors import LoadClientError
from hif.harness import records
from hif.harness._tally import POLL, SLA_BOUND, SLA_SENTENCE, SLA_TOKEN
from hif.harness.client import HttpClient

if TYPE_CHECKING:
    from hif.harness._engine import Engine

TERMINAL = ("complete", "failed", "expired", "shed")
BACKOFF = 1.5
MAX_POOL = 256


class _Trace:
    __slots__ = ("answered", "chaos", "granularity", "last", "polls", "trace_id")

    def __init__(self, trace_id: str, granularity: str, answered: float, chaos: list[str]) -> None:
        self.trace_id, self.granularity, self.answered, self.chaos = trace_id, granularity, answered, chaos
        self.last = answered  # time of the last poll that still saw it pending
        self.polls = 0


class Poller:
    def __init__(self, engine: Engine) -> None:
        self.e = engine
        s = engine.s
        size = min(MAX_POOL, max(4, engine.share.workers)) if s.attach_rate > 0 else 0
        self.pool: asyncio.Queue[HttpClient] = asyncio.Queue()
        self.clients = [engine.client() for _ in range(size)]
        for c in self.clients:
            self.pool.put_nowait(c)
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0

    def admit(
        self, answer: Any, granularity: str | None, answered: float, chaos: list[str]
    ) -> tuple[Any, Any]:
        """Start following the trace of one attached chat answer; returns (trace_id, state)."""
        expl = answer.get("explanation") if isinstance(answer, dict) else None
        trace_id = expl.get("trace_id") if isinstance(expl, dict) else None
        state = expl.get("state") if isinstance(expl, dict) else None
        gran = granularity or "sentence"
        if not trace_id:
            self._finish(
                _Trace("", gran, answered, chaos),
                "failed",
                answered,
                None,
                "the chat answer carried no explanation.trace_id",
            )
            return None, state
        trace = _Trace(str(trace_id), gran, answered, chaos)
        if state in TERMINAL and isinstance(expl, dict):
            self._finish(trace, str(state), answered, expl, expl.get("reason") or expl.get("error"))
        else:
            task = asyncio.ensure_future(self._follow(trace))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return trace_id, state

    async def _follow(self, t: _Trace) -> None:
        s = self.e.s
        deadline = t.answered + s.poll_deadline_seconds
        delay = s.poll_initial_ms / 1000.0
        self.in_flight += 1
        try:
            while True:
                await asyncio.sleep(max(min(time.monotonic() + delay, deadline) - time.monotonic(), 0.0))
                if time.monotonic() >= deadline:
                    self._finish(
                        t,
                        "orphaned",
                        time.monotonic(),
                        None,
                        f"no terminal state within {s.poll_deadline_seconds:g}s",
                    )
                    return
                status, body = await self._get(f"/v1/traces/{t.trace_id}/status")
                t.polls += 1
                now = time.monotonic()
                state = _state_of(status, body)
                if state in TERMINAL:
                    graph_ok = await self._graph_ok(t) if state == "complete" else None
                    self._finish(t, state, now, body, None, graph_ok=graph_ok)
                    return
                t.last = now
                delay = min(delay * BACKOFF, s.poll_max_ms / 1000.0)
        except asyncio.CancelledError:
            self._finish(t, "orphaned", time.monotonic(), None, "the run stopped before a terminal state")
        finally:
            self.in_flight -= 1

    async def _get(self, path: str) -> tuple[int, Any]:
        client = await self.pool.get()
        e = self.e
        t0 = time.monotonic()
        try:
            resp = await client.request("GET", path)
            e.cur.counts["polls"] += 1
            return resp.status, _json(resp.body) if resp.status < 500 else None
        except LoadClientError:
            e.cur.counts["polls"] += 1
            e.cur.counts["poll_errors"] += 1
            return 0, None
        finally:
            e.recorder.record(POLL, (time.monotonic() - t0) * 1000.0)
            self.pool.put_nowait(client)

    async def _graph_ok(self, t: _Trace) -> bool:
        status, _ = await self._get(f"/v1/traces/{t.trace_id}/graph")
        return status == 200

    def _finish(
        self, t: _Trace, state: str, at: float, body: Any, error: str | None, graph_ok: bool | None = None
    ) -> None:
        e = self.e
        counts = e.cur.counts
        counts["traces"] += 1
        counts[f"state:{state}"] += 1
        sla_ms = (at - t.answered) * 1000.0 if state != "orphaned" else None
        bound_ms = (at - t.last) * 1000.0 if sla_ms is not None else None
        if state == "complete" and sla_ms is not None and bound_ms is not None:
            e.recorder.record(SLA_TOKEN if t.granularity == "token" else SLA_SENTENCE, sla_ms)
            e.recorder.record(SLA_BOUND, bound_ms)
        body = body if isinstance(body, dict) else {}
        gran = body.get("granularity")
        e.files.explanation_line(
            {
                "v": records.EXPLANATION_SCHEMA,
                "ts": round(e.wall(t.answered), 6),
                "trace_id": t.trace_id or None,
                "tenant": e.s.tenant_id,
                "granularity": t.granularity,
                "resolved_granularity": gran.get("resolved") if isinstance(gran, dict) else gran,
                "state": state,
                "sla_ms": _round(sla_ms),
                "sla_bound_ms": _round(bound_ms),
                "polls": t.polls,
                "graph_ok": graph_ok,
                "degraded": body.get("degraded") or [],
                "attribution": body.get("attribution"),
                "error": error or body.get("error") or body.get("reason"),
                "chaos": t.chaos,
                "shard": e.s.shard,
                "run": e.run_id,
            }
        )

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for open traces; the rest end ``orphaned``; close the pool."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout_s)
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for c in self.clients:
            await c.close()


def _state_of(status: int, body: Any) -> str | None:
    if status == 410:
        return "expired"
    if status == 200 and isinstance(body, dict):
        return str(body.get("state"))
    return None  # 404 before the trace is visible, 5xx, transport errors: keep polling


def _json(body: bytes) -> Any:
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
