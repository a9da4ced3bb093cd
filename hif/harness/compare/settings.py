"""What ``hif compare`` reads and writes: every ``option`` is a CLI flag, ``HIF_*`` env var and file key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from hif.config import option, positive
from hif.errors import ConfigError
from hif.harness.compare.measures import metric_names


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompareSettings:
    SECTION: typing.ClassVar[str] = "compare"

    baseline: Path = Path(".")  # A, positional on the CLI
    candidate: Path = Path(".")  # B
    out_dir: Path | None = option(None, help="where compare.json and compare.md go (default: B's folder)")
    fail_on: str = option(
        "", help="comma-separated metrics: exit 1 when one got worse beyond noise (e.g. chat_p95_ms)"
    )
    force: bool = option(False, help="compare even when the runs' settings differ")
    draws: int = option(2000, help="bootstrap resamples")
    confidence: float = option(0.95, help="confidence level of the difference's interval")
    seed: int = option(0, help="seed of the bootstrap (the same inputs and seed give the same verdicts)")

    def __post_init__(self) -> None:
        positive("draws", self.draws)
        if not 0.5 <= self.confidence < 1.0:
            raise ConfigError("confidence", f"must be in [0.5, 1), got {self.confidence!r}")
        known = set(metric_names()) | {"frontier"}
        for name in self.fail_on_metrics:
            if name not in known:
                raise ConfigError("fail_on", f"unknown metric {name!r}; one of {', '.join(sorted(known))}")

    @property
    def fail_on_metrics(self) -> list[str]:
        return [m.strip() for m in self.fail_on.split(",") if m.strip()]
