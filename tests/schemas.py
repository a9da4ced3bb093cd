"""Validate the files a test run wrote against the published JSON Schemas in docs/schemas/.

    from tests.schemas import validate_results
    validate_results(results_dir)   # every JSONL line, summary.json, soak_summary.json, report.json

The schemas are read from the repository (the package never needs docs/ at run time); a unit test
(tests/unit/harness/test_records.py) keeps them equal to what :mod:`hif.harness.records` generates.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

from hif.harness import records

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"

# file in a results dir -> (schema name, one JSON document per line?)
FILES: dict[str, tuple[str, bool]] = {
    records.CHAT_FILE: ("chat_record", True),
    records.EXPLANATION_FILE: ("explanation_record", True),
    records.SUMMARY_FILE: ("summary", False),
    records.SOAK_SUMMARY_FILE: ("soak_summary", False),
    records.REPORT_JSON_FILE: ("report", False),
    records.METRICS_FILE: ("metrics_scrape", True),
    "compare.json": ("compare", False),
    "capacity.json": ("capacity", False),
}


@functools.cache
def validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(name: str, document: Any) -> None:
    """Raise ``jsonschema.ValidationError`` when ``document`` does not match schema ``name``."""
    validator(name).validate(document)


def validate_file(path: Path) -> int:
    """Validate one results file by its name; returns how many documents were checked."""
    name, per_line = FILES[path.name]
    if not per_line:
        validate(name, json.loads(path.read_text()))
        return 1
    n = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    validate(name, json.loads(line))
                except jsonschema.ValidationError as exc:
                    raise AssertionError(f"{path}:{lineno}: {exc.message}") from exc
                n += 1
    return n


def validate_results(results_dir: Path) -> int:
    """Validate every known file in ``results_dir``; fails when there is none. Returns documents checked."""
    found = [results_dir / f for f in FILES if (results_dir / f).is_file()]
    assert found, f"no result files in {results_dir}"
    return sum(validate_file(p) for p in found)
