"""What one report reads and where it writes: every ``option`` is a CLI flag, ``HIF_*`` env var and
file key (table ``[report]``), as for the load and soak runners."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from hif.config import option, positive


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReportSettings:
    SECTION: typing.ClassVar[str] = "report"

    # One or more dirs (shards are merged exactly); --results-dir takes several values and may
    # repeat, so, like the runners' --slo, it is added to the parser by hand, not a plain option.
    results_dirs: tuple[Path, ...] = ()
    out_dir: Path | None = option(None, help="where report.* go (default: the first results dir)")
    metrics_url_gateway: str | None = option(
        None, help="gateway Prometheus endpoint, e.g. http://localhost:9091/metrics"
    )
    metrics_url_explainer: str | None = option(
        None, help="explainer Prometheus endpoint, e.g. http://localhost:9090/metrics"
    )
    chaos_path: Path | None = option(
        None, help="chaos control file for the snapshot (default: CHAOS_CONTROL_PATH or /tmp/hif/chaos.json)"
    )
    jobs: int = option(0, help="scan processes (0: one per core)")
    charts: bool = option(True, help="render the PNG charts beside report.md (--no-charts skips them)")

    def __post_init__(self) -> None:
        positive("jobs", self.jobs, allow_zero=True)
