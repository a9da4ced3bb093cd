"""The report's comparison section, from the compare.json in a results dir (``hif compare``'s output).

``hif report --results-dir <compare out dir>`` puts the saved comparison into report.json
(``compare``); report.md and report.html show compare.md's table under their own heading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hif.harness import records
from hif.harness.compare import markdown as compare_md


def section(dirs: Sequence[Path]) -> dict[str, Any] | None:
    """``{"source", "data"}`` from the first dir holding compare.json; None when none does."""
    found = records.first_document(dirs, records.COMPARE_JSON_FILE, (records.COMPARE_SCHEMA,))
    return None if found is None else {"source": str(found[0]), "data": found[1]}


def markdown_lines(report: Mapping[str, Any]) -> list[str]:
    """report.md's (and report.html's) comparison section."""
    cmp = report.get("compare")
    if not cmp:
        return []
    data = cmp["data"]
    verdict = "worse beyond noise: " + (", ".join(data["worse"]) or "nothing")
    return ["## Comparison", "", f"From `{cmp['source']}`: {verdict}.", "", *compare_md.body_lines(data), ""]
