"""soak_summary.json as the soak's checkpoint: atomic writes, loading, and rewinding result files.

The load runner appends every segment's records to the same files. The checkpoint stores their
sizes at the end of the last finished segment; ``--resume`` cuts them back to those sizes, so the
records of a segment that was interrupted half-way vanish with it and the segment runs again.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hif.errors import HarnessError
from hif.harness import records

SOAK_SUMMARY_FILE = records.SOAK_SUMMARY_FILE
PLAN_KEYS = ("hours", "segment_minutes", "concurrency_scale", "spike_minutes")
RECORD_FILES = (
    records.CHAT_FILE,
    records.EXPLANATION_FILE,
    records.HISTOGRAM_LOG_FILE,
    records.CHAOS_EVENTS_FILE,
)


def sizes(results_dir: Path, *, fresh: bool = False) -> dict[str, Any]:
    """Byte sizes of the result files now (all 0 for a fresh soak: its first segment truncates)."""
    files = {}
    for name in RECORD_FILES:
        try:
            files[name] = 0 if fresh else (results_dir / name).stat().st_size
        except FileNotFoundError:
            files[name] = 0
    return {"files": files}


def rewind(results_dir: Path, summary: dict[str, Any]) -> dict[str, int]:
    """Cut each result file back to its checkpointed size; returns the bytes dropped per file."""
    dropped = {}
    for name, size in summary.get("checkpoint", {}).get("files", {}).items():
        path = results_dir / name
        try:
            current = path.stat().st_size
        except FileNotFoundError:
            continue
        if current > size:
            os.truncate(path, size)
            dropped[name] = current - size
    return dropped


def write(path: Path, summary: dict[str, Any]) -> None:
    """Atomically replace ``path`` (temp file, fsync, rename): a crash leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(finite(summary), fh, indent=2, allow_nan=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def finite(value: Any) -> Any:
    """NaN and infinities become null: strict JSON that every reader (and jq) accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def load(path: Path) -> dict[str, Any]:
    """The checkpoint to resume from; a missing, corrupt or foreign file is a HarnessError."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise HarnessError(f"--resume: no {path.name} in {path.parent} (nothing to resume)") from exc
    except ValueError as exc:
        raise HarnessError(f"--resume: {path} is not valid JSON: {exc}") from exc
    if not isinstance(summary, dict) or summary.get("v") not in records.SOAK_SCHEMAS or "plan" not in summary:
        raise HarnessError(f"--resume: {path} is not a soak summary (schema {records.SOAK_SCHEMA})")
    return summary
