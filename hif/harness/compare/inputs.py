"""What ``hif compare`` reads from a results folder: a run, merged shards, a soak, or a capacity search.

A folder is read as:

* a capacity search when it holds ``capacity.json`` (its frontier is compared);
* a report when it holds ``report.json`` (the folders named in its ``inputs.results_dirs`` are read:
  merged shards), plus the folder itself;
* else one run (or soak) folder: ``summary.json``, ``histograms.hlog`` and the JSONL records. A soak
  appends every segment to one set of records and one interval log, but its ``summary.json`` is
  the last segment's: its per-bucket counts come from ``soak_summary.json``'s segments instead.

Schema versions read: summary v2 to v4, report v1 to v4, soak v1 and v2, capacity v1 and v2.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hif.errors import HarnessError
from hif.harness import records

CAPACITY_FILE = records.CAPACITY_JSON_FILE
SUMMARY_VERSIONS = ("hif.summary.v2", "hif.summary.v3", records.SUMMARY_SCHEMA)
REPORT_VERSIONS = (
    records.REPORT_SCHEMA_V1,
    records.REPORT_SCHEMA_V2,
    records.REPORT_SCHEMA_V3,
    records.REPORT_SCHEMA,
)


@dataclasses.dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # run | merged | soak | capacity
    dirs: tuple[Path, ...]  # folders whose record files and histogram logs are read
    summaries: tuple[dict[str, Any], ...]
    report: dict[str, Any] | None
    capacity: dict[str, Any] | None
    soak: dict[str, Any] | None = None

    @property
    def buckets(self) -> list[dict[str, Any]]:
        """Per-bucket counts (requests, errors, traces, expired, failed, shed) over the whole source:
        every segment's for a soak whose buckets carry counts, else the summaries'."""
        segments = (self.soak or {}).get("segments") or []
        soaked = [b for seg in segments for b in seg.get("buckets") or []]
        if soaked and all("errors" in b for b in soaked):
            return [{**b, "start_s": b.get("start_ts")} for b in soaked]
        return [b for s in self.summaries for b in s.get("buckets") or []]

    @property
    def hlogs(self) -> list[Path]:
        return [p for d in self.dirs if (p := d / records.HISTOGRAM_LOG_FILE).is_file()]

    def files(self, name: str) -> list[Path]:
        return [p for d in self.dirs if (p := d / name).is_file()]

    @property
    def settings(self) -> dict[str, Any]:
        """The settings that decide whether two sources compare (the first run's, or the search's)."""
        if self.capacity is not None:
            return dict(self.capacity.get("settings") or {})
        if not self.summaries:
            return {}
        first = self.summaries[0]
        out = dict(first.get("settings") or {})
        out["featureset_used"] = (first.get("featureset") or {}).get("used")
        return out

    @property
    def gates(self) -> list[dict[str, Any]]:
        return [g for s in self.summaries for g in ((s.get("slo") or {}).get("gates") or [])]


def load_source(path: Path) -> Source:
    """Read one folder; a folder with nothing comparable, or an unknown schema version, is an error."""
    if not path.is_dir():
        raise HarnessError(f"results dir {path} does not exist")
    capacity = _json(path / CAPACITY_FILE)
    if capacity is not None:
        version = capacity.get("schema")
        if version not in records.CAPACITY_SCHEMAS:
            raise HarnessError(
                f"{path / CAPACITY_FILE}: schema {version!r} is not one of {records.CAPACITY_SCHEMAS}"
            )
        return Source(path, "capacity", (path,), (), None, capacity)
    report = _json(path / records.REPORT_JSON_FILE)
    dirs = [path]
    if report is not None:
        if report.get("schema") not in REPORT_VERSIONS:
            raise HarnessError(f"{path / records.REPORT_JSON_FILE}: unknown schema {report.get('schema')!r}")
        report = records.upgrade_report(report)
        dirs += [
            d for raw in (report.get("inputs") or {}).get("results_dirs") or [] if (d := _find(raw, path))
        ]
    dirs = list(dict.fromkeys(d.resolve() for d in dirs))
    summaries = tuple(s for d in dirs if (s := _summary(d)) is not None)
    if not summaries and not any((d / records.HISTOGRAM_LOG_FILE).is_file() for d in dirs):
        raise HarnessError(
            f"{path}: no {records.SUMMARY_FILE}, {records.HISTOGRAM_LOG_FILE} or {CAPACITY_FILE}"
        )
    soaks = [s for d in dirs if (s := _json(d / records.SOAK_SUMMARY_FILE)) is not None]
    if soaks:
        if soaks[0].get("v") not in records.SOAK_SCHEMAS:
            raise HarnessError(
                f"{path}: soak schema {soaks[0].get('v')!r} is not one of {records.SOAK_SCHEMAS}"
            )
        kind = "soak"
    else:
        kind = "merged" if len(summaries) > 1 else "run"
    return Source(path, kind, tuple(dirs), summaries, report, None, soaks[0] if soaks else None)


def _find(raw: str, base: Path) -> Path | None:
    """A results dir named in a report: as written (relative to where the report ran), else beside it."""
    for candidate in (Path(raw), base / raw, base.parent / Path(raw).name):
        if candidate.is_dir():
            return candidate
    return None


def _summary(d: Path) -> dict[str, Any] | None:
    data = _json(d / records.SUMMARY_FILE)
    if data is None:
        return None
    if data.get("v") not in SUMMARY_VERSIONS:
        raise HarnessError(
            f"{d / records.SUMMARY_FILE}: schema {data.get('v')!r} is not one of {SUMMARY_VERSIONS}"
        )
    return data


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} is not readable JSON: {exc}") from exc
    return data if isinstance(data, dict) else None
