"""The report's capacity section: a search's frontier and steps, from the capacity.json in a results dir.

``hif report --results-dir <capacity folder>`` puts the saved search into report.json (``capacity``),
and both views render it from there: report.md with capacity.md's tables and the frontier as an SVG,
report.html with the same tables and an interactive frontier chart (arrival rate against attach
rate, each step marked pass or fail, failing steps grouped by the SLO that broke first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hif.harness import records
from hif.harness.capacity import markdown as capacity_md

FRONTIER_SVG_FILE = "capacity_frontier.svg"
VERDICT_COLORS = {"pass": "#2e7d32", "inconclusive": "#9e9e9e", "invalid": "#616161"}
FAIL_COLORS = ("#c62828", "#ef6c00", "#ad1457", "#6a1b9a", "#4e342e")
FRONTIER_COLORS = ("#1565c0", "#00838f", "#283593", "#558b2f")


def section(dirs: Sequence[Path]) -> dict[str, Any] | None:
    """``{"source", "data"}`` from the first dir holding capacity.json; None when none does."""
    found = records.first_document(dirs, records.CAPACITY_JSON_FILE, records.CAPACITY_SCHEMAS)
    return None if found is None else {"source": str(found[0]), "data": found[1]}


def markdown_lines(report: Mapping[str, Any], charts: Mapping[str, str]) -> list[str]:
    """report.md's capacity section (capacity.md's tables under the report's headings)."""
    cap = report.get("capacity")
    if not cap:
        return []
    data = cap["data"]
    out = ["## Capacity", "", f"From `{cap['source']}`.", "", *capacity_md.summary_lines(data), ""]
    if "capacity" in charts:
        out += [f"![capacity frontier]({charts['capacity']})", ""]
    out += [*capacity_md.frontier_table(data), "", "### Capacity steps", "", *capacity_md.steps_table(data)]
    return [*out, ""]


def render_svg(report: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """The frontier chart beside report.md (``{"capacity": file name}``; empty without a search)."""
    cap = report.get("capacity")
    if not cap:
        return {}
    (out_dir / FRONTIER_SVG_FILE).write_text(capacity_md.render_svg(cap["data"]))
    return {"capacity": FRONTIER_SVG_FILE}


def chart_spec(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """report.html's frontier chart, in html.chart_specs' shape: x is the attach rate (one x per
    step, sorted, so several steps share an attach rate), one points-only line per verdict (failing
    steps one line per SLO that broke first) and the frontier joined across attach rates."""
    cap = report.get("capacity")
    if not cap or not cap["data"]["steps"]:
        return None
    data = cap["data"]
    steps = sorted(data["steps"], key=lambda st: (st["attach_rate"], st["rate_rps"]))
    xs = [float(st["attach_rate"]) for st in steps]
    lines: list[dict[str, Any]] = []
    for i, (label, rows) in enumerate(_frontiers(data["frontier"])):
        values: list[float | None] = [None] * len(xs)
        for f in rows:
            if f["rate_rps"] is not None:
                values[xs.index(float(f["attach_rate"]))] = float(f["rate_rps"])
        color = FRONTIER_COLORS[i % len(FRONTIER_COLORS)]
        lines.append({"label": label, "values": values, "color": color, "span": True})
    groups: dict[str, list[int]] = {}
    for j, st in enumerate(steps):
        groups.setdefault(_group(st), []).append(j)
    fails = 0
    for name, where in groups.items():
        if name.startswith("fail"):
            color, fails = FAIL_COLORS[fails % len(FAIL_COLORS)], fails + 1
        else:
            color = VERDICT_COLORS.get(name.split(" ")[0], "#000000")
        values = [float(steps[j]["rate_rps"]) if j in where else None for j in range(len(xs))]
        lines.append({"label": name, "values": values, "color": color, "points_only": True})
    pad = 0.05 * (xs[-1] - xs[0]) or 0.05
    return {
        "id": "capacity",
        "title": "Capacity frontier: arrival rate (req/s) against attach rate",
        "xlabel": "attach rate",
        "xrange": [xs[0] - pad, xs[-1] + pad],
        "x": xs,
        "lines": lines,
        "bands": [],
    }


def _frontiers(frontier: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """One frontier per prompt length (a search without that axis has one)."""
    by_prompt: dict[Any, list[Mapping[str, Any]]] = {}
    for f in frontier:
        by_prompt.setdefault(f.get("prompt_tokens"), []).append(f)
    return [
        (f"frontier ({p} prompt tokens)" if p is not None else "frontier (highest passing rate)", rows)
        for p, rows in by_prompt.items()
    ]


def _group(step: Mapping[str, Any]) -> str:
    verdict = str(step["verdict"])
    if verdict == "fail":
        return f"fail: {step['first_broken'] or 'saturation'}"
    return verdict


def html_lines(report: Mapping[str, Any]) -> list[str]:
    """report.html's text under the chart: the same lines as report.md's section, no image."""
    return markdown_lines(report, {})
