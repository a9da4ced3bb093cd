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
import typing
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from hif.errors import LoadClientError
from hif.harness import records
from hif.harness.client import HttpClient
from hif.harness.load.settings import PollPolicy

# rate_limited: the tenant's own explain_rpm, never sidecar overload; terminal in the chat answer
TERMINAL = ("complete", "failed", "expired", "shed", "rate_limited")
BACKOFF = 1.5
MAX_POOL = 256


class _Trace:
    __slots__ = ("answered", "chaos", "granularity", "last", "polls", "trace_id")

    def __init__(self, trace_id: str, granularity: str, answered: float, chaos: list[str]) -> None:
        self.trace_id, self.granularity, self.answered, self.chaos = trace_id, granularity, answered, chaos
        self.last = answered  # time of the last poll that still saw it pending
        self.polls = 0


class TraceOutcome(Protocol):
    """What the poller reports to (the engine's bookkeeping), as the chat lane reports to ``Outcome``."""

    @property
    def run_id(self) -> str: ...

    def wall(self, mono: float) -> float: ...

    def polled(self, latency_ms: float, *, error: bool) -> None: ...

    def traced(
        self, record: records.ExplanationRecord, sla_ms: float | None, bound_ms: float | None
    ) -> None: ...


class Poller:
    def __init__(
        self, policy: PollPolicy, out: TraceOutcome, client: Callable[[], HttpClient], pool_size: int
    ) -> None:
        """``pool_size`` connections made by ``client`` (0 when the run attaches no explanations)."""
        self.policy, self.out = policy, out
        size = min(MAX_POOL, max(4, pool_size)) if pool_size else 0
        self.pool: asyncio.Queue[HttpClient] = asyncio.Queue()
        self.clients = [client() for _ in range(size)]
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
        policy = self.policy
        deadline = t.answered + policy.deadline_s
        delay = policy.initial_ms / 1000.0
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
                        f"no terminal state within {policy.deadline_s:g}s",
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
                delay = min(delay * BACKOFF, policy.max_ms / 1000.0)
        except asyncio.CancelledError:
            self._finish(t, "orphaned", time.monotonic(), None, "the run stopped before a terminal state")
        finally:
            self.in_flight -= 1

    async def _get(self, path: str) -> tuple[int, Any]:
        client = await self.pool.get()
        t0 = time.monotonic()
        error = True
        try:
            resp = await client.request("GET", path)
            error = False
            return resp.status, _json(resp.body) if resp.status < 500 else None
        except LoadClientError:
            return 0, None
        finally:
            self.out.polled((time.monotonic() - t0) * 1000.0, error=error)
            self.pool.put_nowait(client)

    async def _graph_ok(self, t: _Trace) -> bool:
        status, _ = await self._get(f"/v1/traces/{t.trace_id}/graph")
        return status == 200

    def _finish(
        self, t: _Trace, state: str, at: float, body: Any, error: str | None, graph_ok: bool | None = None
    ) -> None:
        sla_ms = (at - t.answered) * 1000.0 if state != "orphaned" else None
        bound_ms = (at - t.last) * 1000.0 if sla_ms is not None else None
        body = body if isinstance(body, dict) else {}
        gran = body.get("granularity")
        out, policy = self.out, self.policy
        record: records.ExplanationRecord = {
            "v": records.EXPLANATION_SCHEMA,
            "ts": round(out.wall(t.answered), 6),
            "trace_id": t.trace_id or None,
            "tenant": policy.tenant_id,
            "granularity": t.granularity,
            "resolved_granularity": gran.get("resolved") if isinstance(gran, dict) else gran,
            "state": typing.cast(records.ExplanationState, state),
            "sla_ms": _round(sla_ms),
            "sla_bound_ms": _round(bound_ms),
            "polls": t.polls,
            "graph_ok": graph_ok,
            "degraded": body.get("degraded") or [],
            "attribution": body.get("attribution"),
            "error": error or body.get("error") or body.get("reason"),
            "chaos": t.chaos,
            "shard": policy.shard,
            "run": out.run_id,
        }
        out.traced(record, sla_ms, bound_ms)

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
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
