"""What one report reads and where it writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReportSettings:
    results_dirs: tuple[Path, ...]
    out_dir: Path | None = None
    metrics_url_gateway: str | None = None
    metrics_url_explainer: str | None = None
    chaos_path: Path | None = None
    jobs: int = 0  # 0: one per available core
    charts: bool = True
