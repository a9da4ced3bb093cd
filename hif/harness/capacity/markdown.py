"""capacity.md and capacity.svg (the frontier chart) from a saved capacity.json."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

W, H, PAD = 640, 360, 56
COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#9e9e9e", "invalid": "#616161"}
FRONTIERS = ("#1565c0", "#00838f", "#283593", "#558b2f")  # one line per prompt length


def render_markdown(data: Mapping[str, Any]) -> str:
    lines = ["# Capacity", "", *summary_lines(data), "", "![frontier](capacity.svg)", ""]
    lines += [*frontier_table(data), "", "## Steps", "", *steps_table(data)]
    return "\n".join(lines) + "\n"


def summary_lines(data: Mapping[str, Any]) -> list[str]:
    """What was searched, how each step was judged, and how the search ended."""
    s, m = data["settings"], data["method"]
    return [
        f"Target `{s['base_url']}`; gates {', '.join(f'`{g}`' for g in s['slo'])}; {m['arrival']} arrivals; "
        f"each step {m['warmup_s']:g} s warm-up (discarded) + {m['step_s']:g} s judged; a p95 needs "
        f"{m['min_tail_samples']} values beyond it ({m['min_tail_samples'] * 20} in all). "
        f"Status: **{data['status']}** (exit {data['exit_code']})."
    ]


def _prompted(data: Mapping[str, Any]) -> bool:
    """Whether the search had a prompt-length axis (capacity.json v2 with --prompt-tokens)."""
    return any(f.get("prompt_tokens") is not None for f in data["frontier"])


def frontier_table(data: Mapping[str, Any]) -> list[str]:
    """One row per attach rate (and prompt length): the highest passing rate, its interval and the
    first SLO to break."""
    prompted = _prompted(data)
    lines = [
        "| attach rate |" + (" prompt tokens |" if prompted else "")
        + " highest passing rate (req/s) | interval | first to break | steps |",
        "|---:|" + ("---:|" if prompted else "") + "---:|---|---|---:|",
    ]  # fmt: skip
    for f in data["frontier"]:
        rate = f"{f['rate_rps']:.1f}" if f["rate_rps"] is not None else _none(f)
        if f["reached_max"]:
            rate += " (rate_max: beyond)"
        interval = (
            "-" if not f["interval_rps"] else f"{f['interval_rps'][0]:.1f} .. {f['interval_rps'][1]:.1f}"
        )
        prompt = f" {f.get('prompt_tokens')} |" if prompted else ""
        lines.append(
            f"| {f['attach_rate']:g} |{prompt} {rate} | {interval} | {f['first_broken'] or '-'} | "
            f"{f['steps']} |"
        )
    return lines


def steps_table(data: Mapping[str, Any]) -> list[str]:
    """Every step: rate, verdict and each gate's value against its threshold."""
    prompted = _prompted(data)
    lines = [
        "| # | attach |" + (" prompt |" if prompted else "")
        + " rate | achieved | verdict | gates (value / threshold, samples) | folder |",
        "|---:|---:|" + ("---:|" if prompted else "") + "---:|---:|---|---|---|",
    ]  # fmt: skip
    for st in data["steps"]:
        gates = "; ".join(_gate(g) for g in st["gates"])
        note = " (repeat)" if st["repeat_of"] is not None else ""
        note += " saturated" if st["saturated"] else ""
        prompt = f" {st.get('prompt_tokens')} |" if prompted else ""
        lines.append(
            f"| {st['index']} | {st['attach_rate']:g} |{prompt} {st['rate_rps']:.1f} | "
            f"{st['achieved_rps']:.1f} | "
            f"{st['verdict']}{note} | {gates} | `{st['results_dir']}` |"
        )
    return lines


def render_svg(data: Mapping[str, Any]) -> str:
    """Arrival rate (y) against attach rate (x): every step marked by verdict, the frontier joined."""
    steps, frontier = data["steps"], data["frontier"]
    attaches = sorted({st["attach_rate"] for st in steps} | {f["attach_rate"] for f in frontier}) or [0.0]
    top = max([st["rate_rps"] for st in steps] + [1.0]) * 1.1
    lo_a, hi_a = attaches[0], attaches[-1]

    def x(a: float) -> float:
        return PAD + (W - 2 * PAD) * ((a - lo_a) / (hi_a - lo_a) if hi_a > lo_a else 0.5)

    def y(r: float) -> float:
        return H - PAD - (H - 2 * PAD) * r / top

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        'font-family="sans-serif" font-size="11">',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">attach rate</text>',
        f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" '
        'text-anchor="middle">arrival rate (req/s)</text>',
    ]
    for a in attaches:
        out.append(f'<text x="{x(a):.1f}" y="{H - PAD + 14}" text-anchor="middle">{a:g}</text>')
    for i in range(5):
        r = top * i / 4
        out.append(f'<text x="{PAD - 6}" y="{y(r) + 4:.1f}" text-anchor="end">{r:.0f}</text>')
    for st in steps:
        c = COLOURS.get(st["verdict"], "#000")
        out.append(
            f'<circle cx="{x(st["attach_rate"]):.1f}" cy="{y(st["rate_rps"]):.1f}" r="4" fill="{c}">'
            f"<title>{st['rate_rps']:.1f} req/s: {st['verdict']}</title></circle>"
        )
    prompts = list(dict.fromkeys(f.get("prompt_tokens") for f in frontier))
    for i, prompt in enumerate(prompts):  # one frontier per prompt length (one without that axis)
        line = [(x(f["attach_rate"]), y(f["rate_rps"])) for f in frontier
                if f["rate_rps"] is not None and f.get("prompt_tokens") == prompt]  # fmt: skip
        if len(line) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in line)
            colour = FRONTIERS[i % len(FRONTIERS)]
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
    points = [(x(f["attach_rate"]), y(f["rate_rps"]), f) for f in frontier if f["rate_rps"] is not None]
    for px, py, f in points:
        prompt = f"{f['prompt_tokens']} tok: " if f.get("prompt_tokens") is not None else ""
        label = escape(f"{prompt}{f['rate_rps']:.1f} ({f['first_broken'] or 'none broke'})")
        right = px > W / 2  # labels of points on the right half run leftwards, inside the chart
        anchor, dx = ("end", -6) if right else ("start", 6)
        out.append(
            f'<text x="{px + dx:.1f}" y="{py - 6:.1f}" text-anchor="{anchor}" fill="#1565c0">{label}</text>'
        )
    out.append(
        f'<text x="{W - PAD}" y="{PAD - 10}" text-anchor="end">'
        "green pass, red fail, grey inconclusive/invalid; blue: frontier (first SLO to break)</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _none(f: Mapping[str, Any]) -> str:
    return none_passed(f)


def none_passed(f: Mapping[str, Any]) -> str:
    """Why a frontier row has no passing rate, in words."""
    broke, lowest = f.get("broke_at_rps"), f.get("lowest_rps")
    if f["first_broken"] and broke is not None and lowest is not None and broke > lowest:
        return f"none ({f['first_broken']} broke at {broke:g} req/s; every lower step had too few samples)"
    return "none (lowest step broke a gate)" if f["first_broken"] else "none (no step had samples enough)"


def _gate(g: Mapping[str, Any]) -> str:
    short = f" < {g['min_samples']}" if g["verdict"] == "inconclusive" else ""
    return f"{g['name']} {_num(g['value'])}/{g['threshold']:g} ({g['samples']}{short})"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"
