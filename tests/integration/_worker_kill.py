"""One explainer worker killed under a steady load: what happens to the traces in the next 30 s.

Shared by the embedded (SQLite, ``hif serve --workers 2``) and distributed (Redis, two explainers)
tests. The load is paced at ``LOAD_SHARE`` of one worker's capacity (the stand-in pipeline of
``_fake_pipeline.py`` takes ``JOB_S`` a job), so the surviving worker alone has room to spare: any
trace shed or expired after the kill is capacity lost to the dead worker, not overload.

    outcome = run(system_probe)
    assert outcome.shed == 0 and outcome.expired <= 1
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

JOB_S = 0.5
LOAD_SHARE = 0.4
INTERVAL_S = JOB_S / LOAD_SHARE
WARM_UP_S = 5.0
FIND_VICTIM_S = 30.0
AFTER_KILL_S = 30.0
SETTLE_S = 90.0
# Budgets that a lost lease breaks and a released one does not: hard backpressure starts at a
# queue lag of 4 s, while an orphaned lease (before the fix) ages to the 30 s visibility timeout.
SLA_FLAGS = ("--sentence-budget-s", "4", "--token-budget-s", "8", "--trace-ttl-s", "60")


class Target(Protocol):
    def send(self, i: int) -> tuple[str, str]:
        """One chat with an explanation: (trace id, the explanation's first state)."""

    def holder(self) -> tuple[str, int] | None:
        """A leased job right now and the pid of the worker holding it (None when none is)."""

    def kill(self, pid: int) -> None:
        """kill -9 the worker ``pid`` (the embedded worker, or the whole explainer it belongs to)."""

    def final(self, trace_id: str) -> tuple[str, int] | None:
        """(state, attempts) when the trace is terminal, else None."""


@dataclasses.dataclass
class Outcome:
    sent: int
    complete: int
    expired: int
    shed: int
    failed: int
    victim_state: str
    victim_attempts: int

    def line(self) -> str:
        return (
            f"after kill -9 ({AFTER_KILL_S:.0f} s, {self.sent} traces): complete={self.complete} "
            f"expired={self.expired} shed={self.shed} failed={self.failed}; killed worker's job "
            f"{self.victim_state} attempts={self.victim_attempts}"
        )


class _Pacer:
    """Sends on a fixed schedule; between sends, ``idle`` runs (a victim search) until the next one."""

    def __init__(self, target: Target) -> None:
        self.target, self.sent, self.i = target, [], 0
        self.next_at = time.monotonic()

    def until(self, deadline: float, idle: Callable[[], bool] = lambda: False) -> bool:
        """Keep the load going until ``deadline``; True as soon as ``idle`` returns True."""
        while time.monotonic() < deadline:
            if time.monotonic() >= self.next_at:
                self.sent.append(self.target.send(self.i)[0])
                self.i += 1
                self.next_at += INTERVAL_S
            if idle():
                return True
            time.sleep(0.02)  # a poll interval between schedule checks, not a stand-in for work
        return False


def run(target: Target) -> Outcome:
    pacer = _Pacer(target)
    pacer.until(time.monotonic() + WARM_UP_S)
    found: list[tuple[str, int]] = []

    def look() -> bool:
        held = target.holder()
        if held:
            found.append(held)
        return held is not None

    if not pacer.until(time.monotonic() + FIND_VICTIM_S, look):
        raise AssertionError(f"no worker held a job within {FIND_VICTIM_S:.0f} s of steady load")
    victim_trace, pid = found[-1]
    target.kill(pid)
    before = len(pacer.sent)
    pacer.until(time.monotonic() + AFTER_KILL_S)
    watched = [*pacer.sent[before:], victim_trace]
    finals = _settle(target, watched)
    after = [finals[t][0] for t in watched[:-1]]
    state, attempts = finals[victim_trace]
    return Outcome(
        sent=len(after),
        complete=after.count("complete"),
        expired=after.count("expired"),
        shed=after.count("shed"),
        failed=after.count("failed"),
        victim_state=state,
        victim_attempts=attempts,
    )


def _settle(target: Target, trace_ids: list[str]) -> dict[str, tuple[str, int]]:
    deadline = time.monotonic() + SETTLE_S
    done: dict[str, tuple[str, int]] = {}
    while time.monotonic() < deadline:
        for trace_id in trace_ids:
            if trace_id not in done and (final := target.final(trace_id)) is not None:
                done[trace_id] = final
        if len(done) == len(trace_ids):
            return done
        time.sleep(0.2)
    missing = sorted(set(trace_ids) - set(done))
    raise AssertionError(f"{len(missing)} traces not terminal within {SETTLE_S:.0f} s: {missing[:5]}")
