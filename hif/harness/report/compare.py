"""The report's comparison section, from the compare.json in a results dir (``hif compare``'s output).

``hif report --results-dir <compare out dir>`` puts the saved comparison into report.json
(``compare``); report.md and report.html show compare.md's table under their own heading.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hif.errors import HarnessError
from hif.harness import records
from hif.harness.compare import markdown as compare_md


def section(dirs: Sequence[Path]) -> dict[str, Any] | None:
    """``{"source", "data"}`` from the first dir holding compare.json; None when none does."""
    for d in dirs:
        path = d / records.COMPARE_JSON_FILE
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{path} is not readable JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("schema") != records.COMPARE_SCHEMA:
            version = data.get("schema") if isinstance(data, dict) else None
            raise HarnessError(f"{path}: schema {version!r} is not {records.COMPARE_SCHEMA}")
        return {"source": str(path), "data": data}
    return None


def markdown_lines(report: Mapping[str, Any]) -> list[str]:
    """report.md's (and report.html's) comparison section."""
    cmp = report.get("compare")
    if not cmp:
        return []
    data = cmp["data"]
    verdict = "worse beyond noise: " + (", ".join(data["worse"]) or "nothing")
    return ["## Comparison", "", f"From `{cmp['source']}`: {verdict}.", "", *compare_md.body_lines(data), ""]
