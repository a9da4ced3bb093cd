"""compare.md and compare.html from a saved compare.json."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

VERDICTS = {"worse": "**worse**", "better": "better", "within_noise": "within noise", "no_data": "no data"}


def render_markdown(data: Mapping[str, Any]) -> str:
    return "\n".join(["# Comparison", "", *body_lines(data)]) + "\n"


def body_lines(data: Mapping[str, Any]) -> list[str]:
    """compare.md below its heading: the two folders, the method, the table and the gated verdict."""
    m = data["method"]
    lines = [
        f"A (baseline): `{data['a']['path']}` ({data['a']['kind']}); "
        f"B: `{data['b']['path']}` ({data['b']['kind']}).",
        "",
        f"Difference = B - A. Beyond noise: the {m['confidence']:.0%} bootstrap interval of the difference "
        f"({m['draws']} draws, resampling {m['resampled']}) excludes zero.",
        "",
    ]
    if data["settings_differences"]:
        lines += [
            f"**Settings differ (compared with --force):** {'; '.join(data['settings_differences'])}.",
            "",
        ]
    lines += [
        "| metric | A | B | B - A | relative | interval | verdict |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in data["metrics"]:
        ci = r.get("ci")
        interval = (
            f"[{_num(ci[0], sign=True)}, {_num(ci[1], sign=True)}]" if ci else _pair(r.get("intervals"))
        )
        lines.append(
            f"| {r['name']} | {_num(r['a'])} | {_num(r['b'])} | {_num(r['difference'], sign=True)} | "
            f"{_pct(r['relative'])} | {interval} | {VERDICTS.get(r['verdict'], r['verdict'])} |"
        )
    lines.append("")
    if data["fail_on"]:
        failed = ", ".join(data["failed"]) or "none"
        lines.append(f"Gated (`--fail-on {','.join(data['fail_on'])}`): worse beyond noise: {failed}.")
    return lines


def _pair(intervals: Any) -> str:
    if not intervals:
        return "-"
    return " vs ".join("-" if i is None else f"[{_num(i[0])}, {_num(i[1])}]" for i in intervals)


def _num(v: Any, *, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.4g}" if sign else f"{v:.4g}"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:+.1%}"


def render_html(data: Mapping[str, Any]) -> str:
    """compare.html: the same table as compare.md, standalone (no script, no network)."""
    colour = {"worse": "#c62828", "better": "#2e7d32"}
    rows = []
    for r in data["metrics"]:
        ci = r.get("ci")
        interval = (
            f"[{_num(ci[0], sign=True)}, {_num(ci[1], sign=True)}]" if ci else _pair(r.get("intervals"))
        )
        style = f' style="color:{colour[r["verdict"]]}"' if r["verdict"] in colour else ""
        cells = [r["name"], _num(r["a"]), _num(r["b"]), _num(r["difference"], sign=True), _pct(r["relative"])]
        rows.append(
            "<tr>"
            + "".join(f"<td>{escape(c)}</td>" for c in [*cells, interval])
            + f"<td{style}>{escape(VERDICTS.get(r['verdict'], r['verdict']).strip('*'))}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("metric", "A", "B", "B - A", "relative", "interval", "verdict"))
    notes = "".join(f"<p>{escape(line)}</p>" for line in render_markdown(data).split("\n")[2:5] if line)
    return (
        '<!doctype html><meta charset="utf-8"><title>Comparison</title>'
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}"
        "td:first-child{text-align:left}</style>"
        f"<h1>Comparison</h1>{notes}<table><tr>{head}</tr>{''.join(rows)}</table>\n"
    )
