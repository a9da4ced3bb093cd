"""Soak load shapes as data: profiles of phases, and the segment schedule with its rotation rules.

A :class:`Schedule` answers Locust-style ``tick(elapsed_s) -> SegmentPlan | None`` and lists every
segment up front, so a resumed soak replays exactly the plan it started with.

>>> s = Schedule(profile=PROFILES["spiky"], hours=1.0, segment_minutes=10.0)
>>> [(p.number, p.phase, p.concurrency, p.granularity) for p in s.segments()][3:5]
[(4, 'low', 200, 'mix'), (5, 'high', 800, 'token')]
"""

from __future__ import annotations

import dataclasses
import math

from hif.errors import ConfigError

ATTACH_RATE_MIN = 0.30
ATTACH_RATE_MAX = 0.50
ATTACH_RATE_STEP = 0.05
TOKEN_EVERY = 5  # every 5th segment uses granularity "token"; the others "mix"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    """One load shape: closed-loop workers and an optional global rate limit (0 = unlimited)."""

    name: str
    concurrency: int
    rps_limit: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """Phases cycled over time: one phase per ``spike_minutes`` (defaults to the segment length)."""

    name: str
    phases: tuple[Phase, ...]
    description: str = ""


PROFILES: dict[str, Profile] = {
    "default": Profile(name="default", description="moderate concurrency (about 400)",
                       phases=(Phase(name="steady", concurrency=400),)),
    "heavy": Profile(name="heavy", description="high concurrency (about 1000), unlimited RPS",
                     phases=(Phase(name="heavy", concurrency=1000),)),
    "spiky": Profile(name="spiky",
                     description="alternating high (about 800, unlimited) and low (about 200, 100 req/s)",
                     phases=(Phase(name="high", concurrency=800),
                             Phase(name="low", concurrency=200, rps_limit=100.0))),
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SegmentPlan:
    index: int  # 0-based
    start_offset_s: float
    duration_s: float
    phase: str
    concurrency: int
    rps_limit: float
    attach_rate: float
    granularity: str

    @property
    def number(self) -> int:
        return self.index + 1

    def to_json(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "number": self.number}


def attach_rate(index: int) -> float:
    """A triangle sweep 0.30, 0.35, ... 0.50, 0.45, ... 0.35, then again (period 8).

    The period (8) and TOKEN_EVERY (5) are coprime, so token segments meet every attach rate.
    """
    steps = round((ATTACH_RATE_MAX - ATTACH_RATE_MIN) / ATTACH_RATE_STEP)
    pos = index % (2 * steps)
    level = pos if pos <= steps else 2 * steps - pos
    return round(ATTACH_RATE_MIN + level * ATTACH_RATE_STEP, 2)


def granularity(index: int) -> str:
    return "token" if (index + 1) % TOKEN_EVERY == 0 else "mix"


def scale_phase(phase: Phase, scale: float) -> Phase:
    """``--concurrency-scale``: shrink (or grow) a profile for the machine at hand."""
    rps = 0.0 if phase.rps_limit <= 0 else max(1.0, round(phase.rps_limit * scale, 3))
    return dataclasses.replace(phase, concurrency=max(1, round(phase.concurrency * scale)), rps_limit=rps)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    profile: Profile
    hours: float
    segment_minutes: float = 10.0
    concurrency_scale: float = 1.0
    spike_minutes: float | None = None

    def __post_init__(self) -> None:
        for key in ("hours", "segment_minutes", "concurrency_scale"):
            if not getattr(self, key) > 0:
                raise ConfigError(key, f"must be > 0, got {getattr(self, key)!r}")
        if self.spike_minutes is not None and not self.spike_minutes > 0:
            raise ConfigError("spike_minutes", f"must be > 0, got {self.spike_minutes!r}")

    @property
    def total_s(self) -> float:
        return self.hours * 3600.0

    @property
    def segment_s(self) -> float:
        return self.segment_minutes * 60.0

    def count(self) -> int:
        return max(1, math.ceil(self.total_s / self.segment_s - 1e-9))

    def phase_at(self, offset_s: float) -> Phase:
        period_s = (self.spike_minutes or self.segment_minutes) * 60.0
        phase = self.profile.phases[int(offset_s / period_s + 1e-9) % len(self.profile.phases)]
        return scale_phase(phase, self.concurrency_scale)

    def plan(self, index: int) -> SegmentPlan:
        start = index * self.segment_s
        phase = self.phase_at(start)
        return SegmentPlan(
            index=index, start_offset_s=round(start, 3),
            duration_s=round(min(self.segment_s, self.total_s - start), 3),
            phase=phase.name, concurrency=phase.concurrency, rps_limit=phase.rps_limit,
            attach_rate=attach_rate(index), granularity=granularity(index),
        )

    def segments(self) -> list[SegmentPlan]:
        return [self.plan(i) for i in range(self.count())]

    def tick(self, elapsed_s: float) -> SegmentPlan | None:
        """The segment running at ``elapsed_s`` into the soak; None once the soak is over."""
        if elapsed_s < 0 or elapsed_s >= self.total_s - 1e-9:
            return None
        return self.plan(min(self.count() - 1, int(elapsed_s // self.segment_s)))

    def to_json(self) -> dict[str, object]:
        return {"profile": self.profile.name, "hours": self.hours, "segment_minutes": self.segment_minutes,
                "concurrency_scale": self.concurrency_scale, "spike_minutes": self.spike_minutes,
                "segments": self.count()}
