"""report.html: self-contained, rendered from report.json, and working in a real headless Chromium."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from matplotlib import image

from hif.harness.records import CHAOS_EVENTS_FILE, CHAT_FILE, EXPLANATION_FILE, SOAK_SUMMARY_FILE
from hif.harness.report import run as report
from hif.harness.report.html import MAX_POINTS, REPORT_HTML_FILE, chart_specs, downsample
from tests._browser import Chromium
from tests.unit.harness.test_report_render import _soak_summary
from tests.unit.harness.test_report_saturation import T0, fake_explainer

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def _page(tmp_path: Path) -> Path:
    d = fake_explainer(tmp_path / "r", seconds=120, offered=6, capacity=8)
    traces = [json.loads(line) for line in (d / EXPLANATION_FILE).read_text().splitlines()]
    for t in traces:  # the hard spike sheds every explanation for its 20 s
        if T0 + 30 <= t["ts"] < T0 + 50:
            t.update(state="shed", sla_ms=0.0)
    (d / EXPLANATION_FILE).write_text("".join(json.dumps(t) + "\n" for t in traces))
    chats = [json.loads(line) for line in (d / CHAT_FILE).read_text().splitlines()]
    for i, c in enumerate(chats):  # the chats streamed: TTFT and TPOT feed the stream chart
        c.update(v="hif.chat.v2", stream=True, ttft_ms=5.0 + i % 7, intended_ttft_ms=6.0 + i % 7, tpot_ms=2.0)
    (d / CHAT_FILE).write_text("".join(json.dumps(c) + "\n" for c in chats))
    events = [
        {"ts": T0 + 30, "action": "enable", "flag": "rate-limit-spike", "params": {"severity": "hard"}},
        {"ts": T0 + 50, "action": "disable", "flag": "rate-limit-spike", "params": {}},
        {"ts": T0 + 70, "action": "enable", "flag": "slow-sae", "params": {"percent": 50}},
        {"ts": T0 + 90, "action": "disable", "flag": "slow-sae", "params": {}},
    ]
    (d / CHAOS_EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
    (d / SOAK_SUMMARY_FILE).write_text(json.dumps(_soak_summary()))
    report.run_report(report.ReportSettings(results_dirs=(d,), chaos_path=tmp_path / "c.json", charts=False))
    return d / REPORT_HTML_FILE


def test_page_is_self_contained_and_links_the_raw_files(tmp_path: Path) -> None:
    page = _page(tmp_path).read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from a network
    assert "uPlot" in page and "Copyright" not in page[:200]
    for name in ("chat_results.jsonl", "explanation_results.jsonl", "report.json", "chaos_events.jsonl"):
        assert f'href="{name}"' in page
    assert "Explanation sidecar not saturated" in page
    assert "<em>Service</em>" in page and "*Service*" not in page  # markdown emphasis rendered


def test_series_are_capped_and_spikes_survive() -> None:
    xs = [float(i) for i in range(100_000)]
    ys: list[float | None] = [1.0] * len(xs)
    ys[54_321] = 999.0
    ys[10:20] = [None] * 10
    out_x, (out_y,) = downsample(xs, [ys])
    assert len(out_x) <= MAX_POINTS and len(out_y) == len(out_x)
    assert max(v for v in out_y if v is not None) == 999.0
    assert downsample(xs[:10], [ys[:10]]) == (xs[:10], [ys[:10]])


def test_charts_have_a_point_on_every_bucket_and_gaps_as_nulls(tmp_path: Path) -> None:
    data = json.loads((_page(tmp_path).parent / "report.json").read_text())
    specs = {c["id"]: c for c in chart_specs(data)}
    assert set(specs) == {"latency", "stream", "sla", "rates", "backpressure", "soak"}
    lat = specs["latency"]
    assert all(len(ln["values"]) == len(lat["x"]) for ln in lat["lines"])
    sla = specs["sla"]["lines"][0]["values"]  # sentence p95: nothing completes during the hard shed
    during = [v for x, v in zip(specs["sla"]["x"], sla, strict=True) if 32 <= x < 48]
    assert during and all(v is None for v in during)
    assert [b["label"] for b in lat["bands"]] == ["chaos: rate-limit-spike (hard)", "chaos: slow-sae"]


def test_report_html_in_headless_chromium(tmp_path: Path, chromium: Chromium) -> None:
    page = _page(tmp_path)
    dom = chromium.dump_dom(page)
    assert 'data-rendered="1"' in dom, dom[-2000:]
    errors = re.search(r'<pre id="page-errors">(.*?)</pre>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == "", errors and errors.group(1)
    sections = dom.count('class="chart-section"')
    charts = re.findall(r'class="chart" id="chart-(\w+)" data-points="(\d+)"', dom)
    assert sections == 6 and len(charts) == sections
    assert f'data-charts="{sections}"' in dom
    assert all(int(n) > 0 for _, n in charts), charts
    assert dom.count("<canvas") >= sections  # uPlot drew a canvas per chart
    ARTIFACTS.mkdir(exist_ok=True)
    shot = chromium.screenshot(page, ARTIFACTS / "report_html.png")
    pixels = image.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not blank: text, lines and shaded windows
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.01


def test_a_page_error_is_caught(tmp_path: Path, chromium: Chromium) -> None:
    """The console capture works: a page whose chart data is broken reports the error."""
    page = _page(tmp_path)
    text = page.read_text()
    page.write_text(text.replace('type="application/json">[', 'type="application/json">[oops', 1))
    dom = chromium.dump_dom(page)
    errors = re.search(r'<pre id="page-errors">(.*?)</pre>', dom, re.S)
    assert errors is not None and "JSON" in errors.group(1)
    assert not re.search(r"<body[^>]*data-charts", dom)  # the chart script stopped


def test_markdown_emphasis_renders_as_html_and_the_rest_is_escaped() -> None:
    from hif.harness.report.html import _block, _inline

    assert _inline("*Service* runs from the send; *intended start* from the slot") == (
        "<em>Service</em> runs from the send; <em>intended start</em> from the slot"
    )
    assert _inline("Verdict: **a gate failed** (`--slo` <x>)") == (
        "Verdict: <strong>a gate failed</strong> (<code>--slo</code> &lt;x&gt;)"
    )
    assert _inline("**2 *nested* 3**") == "<strong>2 <em>nested</em> 3</strong>"
    # not emphasis: arithmetic, a star inside a word, stars in code, a mark left open
    for text in ("2 * 3 * 4", "a*b*c", "open ** mark", "x *y"):
        assert _inline(text) == html.escape(text)
    assert _inline("`*a* <b>`") == "<code>*a* &lt;b&gt;</code>"
    assert _inline('<script>"*x*"</script>') == "&lt;script&gt;&quot;<em>x</em>&quot;&lt;/script&gt;"
    page = _block(["| gate | result |", "|---|---|", "| *p95* | **FAIL** |", "", "*masked*: saturated"])
    assert "<td><em>p95</em></td><td><strong>FAIL</strong></td>" in page
    assert "<p><em>masked</em>: saturated</p>" in page and "*" not in page
