"""The typed records: published schemas match the code, writers' output matches the schemas, and
the report still reads a results folder written before report.json v2."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import types
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hif.harness import records
from hif.harness.load.engine import Engine
from hif.harness.load.settings import LoadSettings
from hif.harness.report.cli import main as report_main
from hif.harness.report.run import build_report, render_report, save_report
from hif.harness.report.settings import ReportSettings
from tests.schemas import SCHEMA_DIR, validate, validate_file


def test_published_schemas_are_what_the_code_generates() -> None:
    """A field change in records.py must regenerate docs/schemas/ (python -m hif.harness.records
    --write-schemas docs/schemas), so the published files never drift from the code."""
    generated = records.schema_files()
    published = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.schema.json")}
    assert published.keys() >= generated.keys()
    for name, text in generated.items():
        assert published[name] == text, f"docs/schemas/{name} is stale: regenerate it"


def test_write_schemas_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert records.main(["--write-schemas", str(tmp_path / "s")]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(records.schema_files())
    assert "chat_record.schema.json" in capsys.readouterr().out


def _engine_lines(tmp_path: Path) -> Path:
    """Drive the engine's record writers (chat answer, late attached chat, dropped slot, a trace
    that failed) without a network, then close its files."""

    async def go() -> None:
        settings = LoadSettings(
            base_url="http://127.0.0.1:9", results_dir=tmp_path, live="off", attach_rate=0.5
        )
        engine = Engine(settings)
        engine.begin()
        now = time.monotonic()
        plain = types.SimpleNamespace(sent=now - 0.01, intended=now - 0.01, attached=False, granularity=None)
        engine.chat_done(plain, 200, None, None, b"{}")  # type: ignore[arg-type]
        late = types.SimpleNamespace(sent=now - 0.2, intended=now - 0.5, attached=True, granularity="token")
        engine.chat_done(late, 200, None, None, b'{"explanation": {"state": "queued"}}')  # type: ignore[arg-type]
        engine.chat_done(plain, 503, "http_5xx", "busy", b"")  # type: ignore[arg-type]
        engine.dropped(now - 1.0, "waited too long")
        await engine.poller.drain(0)
        engine.files.close()

    asyncio.run(go())
    return tmp_path


def test_engine_records_match_their_schemas(tmp_path: Path) -> None:
    d = _engine_lines(tmp_path)
    assert validate_file(d / records.CHAT_FILE) == 4
    assert validate_file(d / records.EXPLANATION_FILE) == 1  # the attached chat had no trace_id
    lines = [json.loads(x) for x in (d / records.CHAT_FILE).read_text().splitlines()]
    assert [line["error_class"] for line in lines] == [None, None, "http_5xx", "dropped"]
    assert lines[1]["late"] is True and lines[1]["granularity"] == "token"


def test_schemas_reject_a_wrong_record() -> None:
    good: dict[str, Any] = {
        "v": "hif.chat.v1",
        "ts": 1.0,
        "intended_ts": 1.0,
        "latency_ms": 2.0,
        "intended_latency_ms": 2.0,
        "status": 200,
        "error_class": None,
        "error": None,
        "tenant": None,
        "attached": False,
        "granularity": None,
        "trace_id": None,
        "explanation_state": None,
        "chaos": [],
        "shard": "1/1",
        "late": False,
        "run": "r",
    }
    validate("chat_record", good)
    for key, value in (("status", "200"), ("error_class", "oops"), ("v", "hif.chat.v0")):
        with pytest.raises(jsonschema.ValidationError):
            validate("chat_record", {**good, key: value})
    with pytest.raises(jsonschema.ValidationError):
        validate("chat_record", {k: v for k, v in good.items() if k != "run"})


# --- a results folder as the runner and report wrote them before report.json v2 ---------------

T0 = 1_700_000_000.0
_V1_PCT = {"count": 2, "p50": 1.0, "p95": 2.0, "p99": 2.0, "max": 2.0}
OLD_REPORT_V1: dict[str, Any] = {
    "schema": "hif.report.v1",
    "generated_at": T0 + 100,
    "inputs": {
        "results_dirs": ["r"],
        "files": ["r/chat_results.jsonl"],
        "lines": {"chat": 2, "explanation": 1},
        "corrupt_lines": {"chat": 0, "explanation": 0},
        "corrupt_examples": [],
        "summaries": 1,
        "scan_seconds": 0.01,
    },
    "run": {"start_ts": T0, "end_ts": T0 + 1, "duration_s": 1.0, "bucket_s": 1.0},
    "chat": {"requests": 2, "latency_ms": _V1_PCT, "intended_latency_ms": _V1_PCT},
    "explanations": {"sla_ms": {"sentence": _V1_PCT, "token": _V1_PCT}, "sla_bound_ms": {}},
    "histograms": {},
    "metrics": {"gateway": None, "explainer": None},
    "chaos": {"snapshot": {}, "source": None, "events": [], "windows": []},
    "slo": {"pass": True, "rows": []},
    "generator": [],
    "series": {},
    "soak": None,
}


def _old_folder(d: Path) -> Path:
    d.mkdir()
    chat: list[dict[str, Any]] = [
        {"v": "hif.chat.v1", "ts": T0 + i, "intended_ts": T0 + i, "latency_ms": 1.0 + i,
         "intended_latency_ms": 1.0 + i, "status": 200, "error_class": None, "error": None,
         "tenant": None, "attached": i == 1, "granularity": "sentence" if i == 1 else None,
         "trace_id": "t1" if i == 1 else None, "explanation_state": "queued" if i == 1 else None,
         "chaos": [], "shard": "1/1", "late": False, "run": "old"}
        for i in range(2)
    ]  # fmt: skip
    expl = {"v": "hif.explanation.v1", "ts": T0 + 1, "trace_id": "t1", "tenant": None,
            "granularity": "sentence", "resolved_granularity": "sentence", "state": "complete",
            "sla_ms": 120.0, "sla_bound_ms": 30.0, "polls": 3, "graph_ok": True, "degraded": [],
            "attribution": None, "error": None, "chaos": [], "shard": "1/1", "run": "old"}  # fmt: skip
    (d / records.CHAT_FILE).write_text("".join(json.dumps(c) + "\n" for c in chat))
    (d / records.EXPLANATION_FILE).write_text(json.dumps(expl) + "\n")
    gate = {"name": "chat_p95_ms", "threshold": 500.0, "value": 2.0, "pass": True}
    summary = {"v": "hif.summary.v1", "slo": {"gates": [gate], "pass": True}, "generator": {"valid": True}}
    (d / records.SUMMARY_FILE).write_text(json.dumps(summary))
    return d


def _as_v1(x: Any) -> Any:
    """What the v1 writer wrote: the same report with bare percentile keys."""
    if isinstance(x, dict):
        if "count" in x and "p95_ms" in x:
            return {k.removesuffix("_ms") if k[0] in "pm" else k: v for k, v in x.items()}
        return {k: _as_v1(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_as_v1(v) for v in x]
    return x


def test_upgrade_renames_v1_percentile_keys() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate("report", OLD_REPORT_V1)  # v1 percentile keys are not v2's
    upgraded = records.upgrade_report(copy.deepcopy(OLD_REPORT_V1))
    assert upgraded["schema"] == records.REPORT_SCHEMA
    pct = {"count": 2, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 2.0, "max_ms": 2.0}
    assert upgraded["chat"]["latency_ms"] == pct
    assert upgraded["explanations"]["sla_ms"] == {"sentence": pct, "token": pct}
    validate("report", upgraded)
    assert records.upgrade_report(upgraded) is upgraded  # v2 passes through


def test_an_old_report_json_renders(tmp_path: Path) -> None:
    d = _old_folder(tmp_path / "r")
    new = build_report([d], ReportSettings(results_dirs=(d,), chaos_path=tmp_path / "c.json"))
    old = _as_v1(json.loads(json.dumps(new)))
    old["schema"] = records.REPORT_SCHEMA_V1
    assert old["chat"]["latency_ms"]["p95"] == new["chat"]["latency_ms"]["p95_ms"]
    (d / records.REPORT_JSON_FILE).write_text(json.dumps(old))
    md_old = render_report(d / records.REPORT_JSON_FILE, charts=False).read_text()
    save_report(new, d)
    md_new = render_report(d / records.REPORT_JSON_FILE, charts=False).read_text()
    assert md_old == md_new


def test_hif_report_reads_a_folder_written_before_the_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _old_folder(tmp_path / "r")
    argv = ["--results-dir", str(d), "--no-charts", "--chaos-path", str(tmp_path / "c.json")]
    assert report_main(argv) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["chat_requests"] == 2 and line["chat_p95_ms"] == pytest.approx(2.0, rel=1e-3)
    assert json.loads((d / records.REPORT_JSON_FILE).read_text())["schema"] == "hif.report.v4"
    for name in (records.REPORT_JSON_FILE, records.CHAT_FILE, records.EXPLANATION_FILE):
        validate_file(d / name)


def test_first_document_reads_the_first_dir_holding_a_known_schema(tmp_path: Path) -> None:
    from hif.errors import HarnessError

    empty, bad, other, good = (tmp_path / n for n in ("empty", "bad", "other", "good"))
    for d in (empty, bad, other, good):
        d.mkdir()
    (bad / "capacity.json").write_text("{not json")
    (other / "capacity.json").write_text('{"schema": "hif.capacity.v0"}')
    (good / "capacity.json").write_text(json.dumps({"schema": records.CAPACITY_SCHEMA, "steps": []}))
    assert records.first_document([empty], "capacity.json", records.CAPACITY_SCHEMAS) is None
    found = records.first_document([empty, good, bad], "capacity.json", records.CAPACITY_SCHEMAS)
    assert found == (good / "capacity.json", {"schema": records.CAPACITY_SCHEMA, "steps": []})
    with pytest.raises(HarnessError, match="not readable JSON"):
        records.first_document([bad, good], "capacity.json", records.CAPACITY_SCHEMAS)
    with pytest.raises(HarnessError, match=r"'hif\.capacity\.v0' is not one of"):
        records.first_document([other], "capacity.json", records.CAPACITY_SCHEMAS)
