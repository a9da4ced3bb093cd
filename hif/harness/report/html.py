"""report.html: one self-contained page, rendered from report.json's data, that opens offline.

The charting library is uPlot (MIT, ~50 KB minified, no dependencies), vendored under ``static/``
with its licence and inlined into the page, so the file opens from a laptop with no network.
Why uPlot: it is small enough to inline into every report, draws tens of thousands of points
without lag, and has zoom (drag), hover values, legend toggles and gaps for nulls built in; see
docs/report.md.

The page embeds a *view* of the report (the chart series, tables and headline lines), not
report.json itself: series are capped at MAX_POINTS per line (min/max kept per stride, so spikes
survive), so a 10M-line run gives a page of a few hundred KB. A small script records
``window.onerror`` and ``console.error`` into ``#page-errors`` and each chart's point count into
its ``data-points`` attribute, which is what the headless-browser test reads back.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from hif.harness.report import capacity as capacity_view
from hif.harness.report import compare as compare_view
from hif.harness.report import markdown as md
from hif.harness.report.charts import STREAM_GATES, readable, shade_color, shade_label

REPORT_HTML_FILE = "report.html"
MAX_POINTS = 2000
RAW_FILES = (
    "chat_results.jsonl",
    "explanation_results.jsonl",
    "summary.json",
    "histograms.hlog",
    "chaos_events.jsonl",
    "soak_summary.json",
    "capacity.json",
    "capacity.md",
    "compare.json",
    "compare.md",
    "report.json",
    "report.md",
)
# matplotlib's tab10, so the page and the PNGs agree
CSS_COLORS = {
    "tab:blue": "#1f77b4",
    "tab:orange": "#ff7f0e",
    "tab:green": "#2ca02c",
    "tab:red": "#d62728",
    "tab:purple": "#9467bd",
    "tab:brown": "#8c564b",
    "tab:gray": "#7f7f7f",
    "tab:olive": "#bcbd22",
    "magenta": "#e377c2",
}


def downsample(
    xs: Sequence[float], cols: Sequence[Sequence[float | None]], max_points: int = MAX_POINTS
) -> tuple[list[float], list[list[float | None]]]:
    """At most ``max_points`` x values: per stride, the first x with each column's max and min
    (two points per stride), so a one-bucket spike is still drawn."""
    n = len(xs)
    if n <= max_points:
        return list(xs), [list(c) for c in cols]
    stride = -(-2 * n // max_points)  # two points out per stride
    out_x: list[float] = []
    out_cols: list[list[float | None]] = [[] for _ in cols]
    for a in range(0, n, stride):
        b = min(a + stride, n)
        mid = a + (b - a) // 2
        out_x += [xs[a], xs[mid]]
        for col, out in zip(cols, out_cols, strict=True):
            vals = [v for v in col[a:b] if v is not None]
            out += [max(vals), min(vals)] if vals else [None, None]
    return out_x, out_cols


def _grid(series: Mapping[str, Any], start: float) -> tuple[list[float], list[int]]:
    """Every bucket from the first to the last (empty ones included, so they draw as gaps), and
    where each of the series' own points sits on it."""
    t, step = series.get("t") or [], float(series.get("bucket_s") or 1.0)
    if not t:
        return [], []
    n = round((t[-1] - t[0]) / step) + 1
    grid = [t[0] - start + i * step for i in range(n)]
    return grid, [round((x - t[0]) / step) for x in t]


def _on_grid(values: Sequence[Any], where: Sequence[int], n: int, scale: float = 1.0) -> list[float | None]:
    out: list[float | None] = [None] * n
    for i, v in zip(where, values, strict=False):
        out[i] = None if v is None else float(v) * scale
    return out


def _bands(d: Mapping[str, Any], start: float, flags: Sequence[str] | None = None) -> list[dict[str, Any]]:
    end = d["run"]["end_ts"]
    return [
        {
            "from": w["start"] - start,
            "to": (w["end"] if w.get("end") is not None else end) - start,
            "color": CSS_COLORS.get(shade_color(w), "#7f7f7f"),
            "label": shade_label(w),
        }
        for w in d["chaos"]["windows"]
        if flags is None or w["flag"] in flags
    ]


def _line(label: str, values: list[float | None], color: str, **kw: Any) -> dict[str, Any]:
    return {"label": label, "values": values, "color": CSS_COLORS.get(color, color), **kw}


def _gate(d: Mapping[str, Any], name: str) -> float | None:
    return next((float(g["threshold"]) for g in d["slo"]["gates"] if g["name"] == name), None)


def _slo_lines(d: Mapping[str, Any], names: Sequence[tuple[str, str]], n: int) -> list[dict[str, Any]]:
    word = "SLO" if d["slo"].get("source") == "summary.json" else "reference (not gated)"
    out = []
    for name, color in names:
        gate = _gate(d, name)
        if gate is not None:
            label = f"{word} {name.removesuffix('_ms').replace('_', ' ')} {gate:g} ms"
            out.append(_line(label, [gate] * n, color, dash=True))
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class TimeChart:
    """One chart over the run's time buckets: its lines are series of report.json's ``series``."""

    id: str
    title: str
    lines: tuple[tuple[str, str, str], ...]  # (label, series key, colour)
    slo: tuple[tuple[str, str], ...] = ()  # (gate name, colour): a dashed line where it was gated
    needs: str | None = None  # drawn only when this series has a value (not for its SLO lines alone)
    optional: frozenset[str] = frozenset()  # series keys whose line is left out when it has no value


TIME_CHARTS = (
    TimeChart(
        "latency",
        "Chat latency (ms)",
        (
            ("p50 service", "chat_p50_ms", "tab:blue"),
            ("p95 service", "chat_p95_ms", "tab:orange"),
            ("p95 intended start", "chat_intended_p95_ms", "tab:green"),
        ),
        (("chat_p95_ms", "tab:red"),),
    ),
    TimeChart(  # a run that streamed (v4); ITL only with a local tokenizer (from histograms.hlog)
        "stream",
        "Streamed chats: TTFT, TPOT and ITL (ms)",
        (
            ("TTFT p95", "ttft_p95_ms", "tab:blue"),
            ("TTFT p99", "ttft_p99_ms", "tab:purple"),
            ("TPOT p95", "tpot_p95_ms", "tab:orange"),
            ("TPOT p99", "tpot_p99_ms", "tab:brown"),
            ("ITL p95", "itl_p95_ms", "tab:green"),
            ("ITL p99", "itl_p99_ms", "tab:olive"),
        ),
        tuple((name, "tab:red") for name in STREAM_GATES),
        needs="ttft_p95_ms",
        optional=frozenset({"itl_p95_ms", "itl_p99_ms"}),
    ),
    TimeChart(
        "sla",
        "Explanation SLA p95 at terminal time (ms)",
        (("sentence p95", "sentence_p95_ms", "tab:blue"), ("token p95", "token_p95_ms", "tab:orange")),
        (("sentence_p95_ms", "tab:blue"), ("token_p95_ms", "tab:orange")),
    ),
    TimeChart(  # a v2 report.json has no rates: the chart is dropped (no line has a value)
        "rates",
        "Per second: goodput, explanations offered and completed",
        (
            ("chats / s", "chat_rps", "tab:gray"),
            ("goodput / s", "goodput_rps", "tab:green"),
            ("explanations offered / s", "expl_offered_rps", "tab:purple"),
            ("explanations completed / s", "expl_completed_rps", "tab:blue"),
        ),
    ),
)


def _spec(
    cid: str, title: str, x: list[float], lines: list[dict[str, Any]], bands: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"id": cid, "title": title, "x": x, "lines": lines, "bands": bands}


def _time_chart(
    chart: TimeChart, d: Mapping[str, Any], grid: list[float], where: list[int]
) -> dict[str, Any] | None:
    s, n = d["series"], len(grid)
    if chart.needs is not None and not any(v is not None for v in s.get(chart.needs) or ()):
        return None
    lines = []
    for label, key, color in chart.lines:
        values = _on_grid(s.get(key) or [], where, n)
        if key not in chart.optional or any(v is not None for v in values):
            lines.append(_line(label, values, color))
    lines += _slo_lines(d, chart.slo, n)
    return _spec(chart.id, chart.title, grid, lines, _bands(d, d["run"]["start_ts"]))


def chart_specs(d: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every chart the data supports, as x values, lines (label, values, colour) and shaded bands."""
    s, start = d["series"], d["run"]["start_ts"]
    grid, where = _grid(s, start)
    n = len(grid)
    out: list[dict[str, Any]] = []
    if n:
        out += [c for chart in TIME_CHARTS if (c := _time_chart(chart, d, grid, where)) is not None]
        adm = s.get("admissions") or {}
        if adm:
            step = float(s["bucket_s"])
            colors = {"queued": "tab:blue", "shed": "tab:red", "rate_limited": "tab:orange"}
            lines = [
                _line(state, _on_grid(v, where, n, 1 / step), colors.get(state, "tab:gray"))
                for state, v in sorted(adm.items())
            ]
            title = "Explanation admission outcomes per second (from the chat answers)"
            out.append(_spec("backpressure", title, grid, lines, _bands(d, start, ["rate-limit-spike"])))
    soak = (d.get("soak") or {}).get("series") or {}
    if soak.get("t_h"):
        names = [k for k in soak if k not in ("t_h", "segment")][:12]
        lines = [
            _line(readable(k)[0], [None if v is None else v * readable(k)[1] for v in soak[k]], c)
            for k, c in zip(names, list(CSS_COLORS.values()) * 2, strict=False)
        ]
        title = "Soak, one point per segment (x: hours since the soak started)"
        out.append(_spec("soak", title, list(soak["t_h"]), lines, []))
    out = [c for c in out if any(v is not None for ln in c["lines"] for v in ln["values"])]
    for c in out:
        c["x"], cols = downsample(c["x"], [ln["values"] for ln in c["lines"]])
        for ln, v in zip(c["lines"], cols, strict=True):
            ln["values"] = v
    return out


def _md_table(lines: list[str]) -> str:
    """The markdown renderer's tables, as HTML (one source for the figures in both views)."""
    rows = [ln for ln in lines if ln.startswith("|") and not ln.startswith("|---")]
    if not rows:
        return ""
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# Markdown's inline spans as the renderers write them: `code` (literal inside), **strong** and
# *em*. An emphasis mark must touch its text on the inside and not sit inside a word or another
# run of stars on the outside (CommonMark's flanking rule, simplified): "p50 * 2" and "a*b" stay
# as written.
_SPANS = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\*\*(?P<strong>[^\s*](?:.*?[^\s*])?)\*\*"
    r"|(?<![\w*])\*(?P<em>[^\s*](?:[^*]*?[^\s*])?)\*(?![\w*])"
)


def _inline(text: str) -> str:
    """Markdown's `code`, **strong** and *em* as HTML; everything else escaped.

    >>> _inline("**FAIL**: *p95* of `a<b` & 2 * 3")
    '<strong>FAIL</strong>: <em>p95</em> of <code>a&lt;b</code> &amp; 2 * 3'
    """
    out, pos = [], 0
    for m in _SPANS.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        if m["code"] is not None:
            out.append(f"<code>{html.escape(m['code'])}</code>")
        elif m["strong"] is not None:
            out.append(f"<strong>{_inline(m['strong'])}</strong>")
        else:
            out.append(f"<em>{_inline(m['em'])}</em>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _block(lines: list[str]) -> str:
    """A markdown section (paragraphs and tables; headings and images dropped) as HTML."""
    parts, table, para = [], [], []
    for ln in [*lines, ""]:
        if ln.startswith("|"):
            table.append(ln)
            continue
        if table:
            parts.append(_md_table(table))
            table = []
        if ln.startswith(("#", "![")):
            continue
        if ln.strip():
            para.append(ln)
        elif para:
            parts.append("<p>" + _inline(" ".join(para)) + "</p>")
            para = []
    return "\n".join(parts)


def _links(d: Mapping[str, Any], out_dir: Path) -> str:
    items = []
    for folder in d["inputs"]["results_dirs"]:
        for name in RAW_FILES:
            path = Path(folder) / name
            if path.is_file() or (name.startswith("report.") and Path(folder).resolve() == out_dir.resolve()):
                rel = os.path.relpath(path, out_dir)
                items.append(f'<li><a href="{html.escape(rel)}">{html.escape(str(path))}</a></li>')
    return "<ul>" + "".join(items) + "</ul>"


def _static(name: str) -> str:
    return resources.files("hif.harness.report").joinpath("static", name).read_text(encoding="utf-8")


def _script_json(x: Any) -> str:
    # inside <script>, "</" would end the element: JSON allows "<\/" for the same string
    return json.dumps(x, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render_html(d: Mapping[str, Any], out_dir: Path) -> Path:
    """Write report.html beside report.md; every figure comes from ``d`` (report.json's data)."""
    charts = chart_specs(d)
    chart_sections = {
        "latency": md._chat(d),
        "stream": md._streaming(d),
        "sla": md._explanations(d),
        "rates": [],
        "backpressure": md._backpressure(d),
        "soak": md._soak(d, {}),
    }
    titles = {"latency": "Chat lane", "stream": "Streaming", "sla": "Explanation SLA", "soak": "Soak",
              "rates": "Goodput and explanation rates", "backpressure": "Backpressure"}  # fmt: skip
    records = bool(d["inputs"].get("files", [None]))  # none: a capacity or compare folder
    body = [
        "<h1>Load report</h1>" if records else "<h1>Report</h1>",
        _block(md._inputs(d)) if records else "",
        "<section><h2>SLOs</h2>" + _block(md._slo(d)) + "</section>" if records else "",
    ]
    for c in charts if records else []:
        body.append(
            f'<section class="chart-section"><h2>{html.escape(titles[c["id"]])}</h2>'
            f'<div class="chart" id="chart-{c["id"]}" data-points="0"></div>'
            f"{_block(chart_sections[c['id']])}</section>"
        )
    if records and "backpressure" not in {c["id"] for c in charts}:
        body.append("<section><h2>Backpressure</h2>" + _block(md._backpressure(d)) + "</section>")
    if records:
        body.append('<section id="chaos"><h2>Chaos windows</h2>' + _block(md._chaos(d)) + "</section>")
    else:
        charts = []
    body += _searched(d, charts)
    body.append("<section><h2>Raw files</h2>" + _links(d, out_dir) + "</section>")
    page = TEMPLATE.format(
        css=_static("uPlot.min.css"),
        uplot=_static("uPlot.iife.min.js"),
        data=_script_json(charts),
        body="\n".join(body),
    )
    path = out_dir / REPORT_HTML_FILE
    path.write_text(page, encoding="utf-8")
    return path


def _searched(d: Mapping[str, Any], charts: list[dict[str, Any]]) -> list[str]:
    """The capacity section (its frontier chart joins ``charts``) and the comparison section."""
    out = []
    if d.get("capacity"):
        spec = capacity_view.chart_spec(d)
        chart = ""
        if spec is not None:
            charts.append(spec)
            chart = '<div class="chart" id="chart-capacity" data-points="0"></div>'
        out.append(
            f'<section id="capacity"><h2>Capacity</h2>{chart}{_block(capacity_view.html_lines(d))}</section>'
        )
    if d.get("compare"):
        out.append(
            f'<section id="compare"><h2>Comparison</h2>{_block(compare_view.markdown_lines(d))}</section>'
        )
    return out


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>HIF load report</title>
<script>
window.__errors = [];
window.addEventListener("error", function (e) {{ window.__errors.push(String(e.message)); }});
(function () {{
  var orig = console.error;
  console.error = function () {{
    window.__errors.push(Array.prototype.map.call(arguments, String).join(" "));
    return orig.apply(console, arguments);
  }};
}})();
// registered first, so the errors are written out even when a chart script throws
window.addEventListener("load", function () {{
  document.getElementById("page-errors").textContent = window.__errors.join("\\n");
  document.body.setAttribute("data-rendered", "1");
}});
</script>
<style>{css}</style>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: .6em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
th {{ background: #f3f3f3; }}
code {{ background: #f3f3f3; padding: 0 3px; }}
.chart {{ margin: .5em 0; }}
#page-errors {{ color: #b00; white-space: pre-wrap; }}
</style></head>
<body>
{body}
<pre id="page-errors"></pre>
<script>{uplot}</script>
<script id="chart-data" type="application/json">{data}</script>
<script>
(function () {{
  var charts = JSON.parse(document.getElementById("chart-data").textContent);
  function bandsPlugin(bands) {{
    return {{ hooks: {{ drawClear: [function (u) {{
      var ctx = u.ctx;
      ctx.save();
      bands.forEach(function (b) {{
        var x0 = u.valToPos(b.from, "x", true), x1 = u.valToPos(b.to, "x", true);
        ctx.fillStyle = b.color + "33";
        ctx.fillRect(x0, u.bbox.top, Math.max(x1 - x0, 1), u.bbox.height);
      }});
      ctx.restore();
    }}] }} }};
  }}
  // a fixed x range (wider than the data) keeps every point of an x value shared by several
  // points (capacity steps at one attach rate) in view; by default the last x value's first point
  // ends the drawn range
  function xScale(c) {{
    var x = {{ time: false }};
    if (c.xrange) x.range = c.xrange;
    return x;
  }}
  charts.forEach(function (c) {{
    var el = document.getElementById("chart-" + c.id);
    var series = [{{ label: c.xlabel || "s" }}].concat(c.lines.map(function (l) {{
      // points_only: markers without a line (capacity steps); span: a line across nulls (a frontier)
      return {{ label: l.label, stroke: l.color, width: l.dash ? 1 : 1.5, dash: l.dash ? [6, 4] : undefined,
               points: {{ show: !l.dash, size: l.points_only ? 9 : 3,
                          fill: l.points_only ? l.color : undefined }},
               paths: l.points_only ? function () {{ return null; }} : undefined, spanGaps: !!l.span }};
    }}));
    var data = [c.x].concat(c.lines.map(function (l) {{ return l.values; }}));
    var legendBands = c.bands.filter(function (b, i, a) {{
      return a.findIndex(function (o) {{ return o.label === b.label; }}) === i;
    }});
    var key = document.createElement("div");
    key.className = "bands";
    legendBands.forEach(function (b) {{
      var span = document.createElement("span");
      span.style.cssText = "padding:0 6px;margin-right:8px;background:" + b.color + "33";
      span.textContent = b.label;
      key.appendChild(span);
    }});
    var title = document.createElement("div");
    var bold = document.createElement("b");
    bold.textContent = c.title;
    title.appendChild(bold);
    title.appendChild(document.createTextNode(
      " (drag to zoom, double-click to reset; click a legend entry to hide it)"));
    el.appendChild(title);
    el.appendChild(key);
    new uPlot({{ width: Math.min(1150, window.innerWidth - 40), height: 300, series: series,
                scales: {{ x: xScale(c) }}, cursor: {{ drag: {{ x: true, y: false }} }},
                axes: [{{ label: c.xlabel ||
                          (c.id === "soak" ? "hours since the soak started" : "seconds since start") }},
                       {{}}],
                plugins: [bandsPlugin(c.bands)] }}, data, el);
    var pts = 0;
    c.lines.forEach(function (l) {{ l.values.forEach(function (v) {{ if (v !== null) pts++; }}); }});
    el.setAttribute("data-points", String(pts));
  }});
  document.body.setAttribute("data-charts", String(charts.length));
}})();
</script>
</body></html>
"""
