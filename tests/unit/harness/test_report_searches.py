"""``hif report`` on a capacity search's folder and on a comparison's: their sections in report.md and
report.html (the frontier chart drawn in headless Chromium), rendered from report.json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image

from hif.errors import HarnessError
from hif.harness import records
from hif.harness.capacity.run import _document, save_capacity
from hif.harness.capacity.settings import CapacitySettings
from hif.harness.compare.run import build_compare, save_compare
from hif.harness.compare.settings import CompareSettings
from hif.harness.report import run as report
from hif.harness.report.capacity import FRONTIER_SVG_FILE, chart_spec
from hif.harness.report.html import REPORT_HTML_FILE
from tests._browser import Chromium
from tests.schemas import validate_file
from tests.unit.harness.test_compare import write_run


def _gate(name: str, value: float, threshold: float) -> dict[str, Any]:
    verdict = "pass" if value <= threshold else "fail"
    margin = (threshold - value) / threshold
    return {"name": name, "kind": "ceiling", "threshold": threshold, "value": value, "margin": margin,
            "samples": 900, "min_samples": 400, "verdict": verdict}  # fmt: skip


def _step(index: int, attach: float, rate: float, chat_ms: float, sentence_ms: float) -> dict[str, Any]:
    gates = [_gate("chat_p95_ms", chat_ms, 500.0)]
    if attach:
        gates.append(_gate("sentence_p95_ms", sentence_ms, 1500.0))
    broken = [g for g in gates if g["verdict"] == "fail"]
    first = min(broken, key=lambda g: g["margin"])["name"] if broken else None
    return {"index": index, "attach_rate": attach, "rate_rps": rate, "results_dir": f"s{index}",
            "verdict": "fail" if broken else "pass", "gates": gates, "first_broken": first,
            "achieved_rps": rate, "generator_valid": True, "reasons": [], "saturated": False,
            "repeat_of": None, "idle_wait_s": 0.0}  # fmt: skip


def capacity_folder(d: Path) -> Path:
    """A finished search over attach 0 and 0.3: chat latency breaks first without explanations,
    the sentence SLA with them."""
    steps = [
        _step(0, 0.0, 10.0, 50.0, 0.0),
        _step(1, 0.0, 20.0, 120.0, 0.0),
        _step(2, 0.0, 40.0, 900.0, 0.0),
        _step(3, 0.0, 30.0, 300.0, 0.0),
        _step(4, 0.3, 10.0, 60.0, 800.0),
        _step(5, 0.3, 20.0, 90.0, 2400.0),
        _step(6, 0.3, 15.0, 80.0, 1300.0),
    ]
    frontier = [
        {"attach_rate": 0.0, "rate_rps": 30.0, "interval_rps": [30.0, 40.0], "first_broken": "chat_p95_ms",
         "steps": 4, "reached_max": False, "generator_short": False},
        {"attach_rate": 0.3, "rate_rps": 15.0, "interval_rps": [15.0, 20.0],
         "first_broken": "sentence_p95_ms", "steps": 3, "reached_max": False, "generator_short": False},
    ]  # fmt: skip
    settings = CapacitySettings(slo=("chat_p95_ms=500", "sentence_p95_ms=1500"), attach_rates="0,0.3")
    save_capacity(_document(settings, 1_700_000_000.0, steps, frontier), d)
    return d


def compare_folder(tmp_path: Path) -> Path:
    a = write_run(tmp_path / "a", seed=1)
    b = write_run(tmp_path / "b", seed=2, scale=1.2)
    out = tmp_path / "cmp"
    save_compare(build_compare(CompareSettings(baseline=a, candidate=b)), out)
    return out


def _report(d: Path, *, charts: bool = True) -> tuple[dict[str, Any], str]:
    report.run_report(report.ReportSettings(results_dirs=(d,), charts=charts))
    validate_file(d / records.REPORT_JSON_FILE)
    return json.loads((d / records.REPORT_JSON_FILE).read_text()), (d / records.REPORT_MD_FILE).read_text()


def test_a_capacity_folder_reports_its_frontier(tmp_path: Path) -> None:
    d = capacity_folder(tmp_path / "cap")
    data, md = _report(d)
    assert data["capacity"]["data"]["frontier"][1]["first_broken"] == "sentence_p95_ms"
    assert data["compare"] is None
    assert md.startswith("# Report") and "## Capacity" in md and "## Chat lane" not in md
    assert "| 0.3 | 15.0 | 15.0 .. 20.0 | sentence_p95_ms | 3 |" in md
    assert f"![capacity frontier]({FRONTIER_SVG_FILE})" in md
    assert "<circle" in (d / FRONTIER_SVG_FILE).read_text()
    assert (d / "capacity.md").read_text().startswith("# Capacity")  # its own view is kept


def test_the_frontier_chart_marks_pass_fail_and_names_the_breaking_slo(tmp_path: Path) -> None:
    data, _ = _report(capacity_folder(tmp_path / "cap"), charts=False)
    spec = chart_spec(data)
    assert spec is not None and spec["x"] == sorted(spec["x"]) and len(spec["x"]) == 7
    lines = {ln["label"]: ln["values"] for ln in spec["lines"]}
    assert set(lines) == {
        "frontier (highest passing rate)",
        "pass",
        "fail: chat_p95_ms",
        "fail: sentence_p95_ms",
    }
    assert [v for v in lines["frontier (highest passing rate)"] if v is not None] == [30.0, 15.0]
    assert sorted(v for v in lines["fail: chat_p95_ms"] if v is not None) == [40.0]
    assert sorted(v for v in lines["fail: sentence_p95_ms"] if v is not None) == [20.0]
    assert sorted(v for v in lines["pass"] if v is not None) == [10.0, 10.0, 15.0, 20.0, 30.0]


def test_a_compare_folder_reports_its_table(tmp_path: Path) -> None:
    d = compare_folder(tmp_path)
    data, md = _report(d)
    assert data["compare"]["data"]["worse"] and data["capacity"] is None
    assert "## Comparison" in md and "| chat_p95_ms |" in md and "worse beyond noise: " in md


def test_a_run_folder_with_a_comparison_keeps_its_load_sections(tmp_path: Path) -> None:
    d = compare_folder(tmp_path)
    (d / records.CHAT_FILE).write_text(
        json.dumps(
            {
                "v": records.CHAT_SCHEMA,
                "ts": 1.7e9,
                "intended_ts": 1.7e9,
                "latency_ms": 5.0,
                "intended_latency_ms": 5.0,
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
        )
        + "\n"
    )
    _, md = _report(d, charts=False)
    assert md.startswith("# Load report") and "## Chat lane" in md and "## Comparison" in md


def test_an_unknown_capacity_version_is_a_clear_error(tmp_path: Path) -> None:
    d = capacity_folder(tmp_path / "cap")
    doc = json.loads((d / records.CAPACITY_JSON_FILE).read_text())
    (d / records.CAPACITY_JSON_FILE).write_text(json.dumps({**doc, "schema": "hif.capacity.v9"}))
    with pytest.raises(HarnessError, match=r"hif\.capacity\.v9"):
        report.build_report([d])


def test_capacity_and_compare_sections_in_headless_chromium(tmp_path: Path, chromium: Chromium) -> None:
    pages = {
        "capacity": capacity_folder(tmp_path / "cap") / REPORT_HTML_FILE,
        "compare": compare_folder(tmp_path) / REPORT_HTML_FILE,
    }
    for page in pages.values():
        report.run_report(report.ReportSettings(results_dirs=(page.parent,), charts=False))
    dom = chromium.dump_dom(pages["capacity"])
    assert 'data-rendered="1"' in dom, dom[-2000:]
    errors = re.search(r'<pre id="page-errors">(.*?)</pre>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == "", errors and errors.group(1)
    points = re.search(r'class="chart" id="chart-capacity" data-points="(\d+)"', dom)
    assert points is not None and int(points.group(1)) == 7 + 2  # every step, and the frontier's points
    assert 'data-charts="1"' in dom and dom.count("<canvas") >= 1
    assert "fail: sentence_p95_ms" in dom  # the legend names the breaking SLO
    # drawn, not only counted: the sentence-SLA failure shares the last attach rate with two passes,
    # and is only drawn when the x range keeps every point at that rate: a solid 5x5 patch of its
    # orange (#ef6c00; the legend's key is an outline, never solid)
    pixels = image.imread(chromium.screenshot(pages["capacity"], tmp_path / "cap.png", height=900))[..., :3]
    orange = np.abs(pixels - [0xEF / 255, 0x6C / 255, 0.0]).max(axis=2) < 0.08
    assert any(orange[y - 2 : y + 3, x - 2 : x + 3].all() for y, x in zip(*orange.nonzero(), strict=True))
    dom = chromium.dump_dom(pages["compare"])
    errors = re.search(r'<pre id="page-errors">(.*?)</pre>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == "", errors and errors.group(1)
    compare = re.search(r'<section id="compare">(.*?)</section>', dom, re.S)
    assert compare is not None and "<table>" in compare.group(1) and "chat_p95_ms" in compare.group(1)
    assert 'data-charts="0"' in dom
