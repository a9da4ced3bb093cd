"""PNG charts for report.md, drawn from report.json's data with matplotlib's Agg backend.

Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot global state), so rendering
is safe in any process and thread. Each function returns the file name it wrote, or None when the
report holds nothing to draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hif.harness.soak.point import SERIES as SOAK_SERIES

# One colour per flag and mode: a hard spike sheds everything, a soft one only some; a fallback
# attribution answers degraded, a failing one answers nothing. Reading them as one would mislead.
SHADES = {
    ("slow-sae", None): "tab:orange",
    ("drop-s3", None): "tab:red",
    ("fail-attribution", "fallback"): "tab:purple",
    ("fail-attribution", "fail"): "magenta",
    ("rate-limit-spike", "soft"): "tab:olive",
    ("rate-limit-spike", "hard"): "tab:brown",
}
ADMISSION_COLORS = {
    "queued": "tab:blue",
    "shed": "tab:red",
    "rate_limited": "tab:orange",
    "complete": "tab:green",
}
MODE_PARAM = {"fail-attribution": "mode", "rate-limit-spike": "severity"}
DPI = 100
# The stream gates drawn as lines on the stream charts (this file's PNG and report.html's)
STREAM_GATES = ("ttft_p95_ms", "ttft_p99_ms", "tpot_p95_ms", "tpot_p99_ms", "itl_p95_ms", "itl_p99_ms")
# The soak panels that matter most come first: the rate, then the series the soak's drift and leak
# fit reads (latency, errors, memory and fds), then the load it was under.
SOAK_FIRST = ("chat_rps", *SOAK_SERIES, "backpressure_level", "attach_rate")


def _x(series: Mapping[str, Any], start: float) -> list[float]:
    return [t - start for t in series.get("t", [])]


def flag_mode(w: Mapping[str, Any]) -> tuple[str, str | None]:
    """(flag, mode) of a window: the mode that changes what the fault does, else None."""
    flag = str(w["flag"])
    param = MODE_PARAM.get(flag)
    mode = (w.get("params") or {}).get(param) if param else None
    if flag == "rate-limit-spike" and mode is None:
        mode = "hard"  # hif.chaos.Fault's default severity
    return flag, None if mode is None else str(mode)


def shade_label(w: Mapping[str, Any]) -> str:
    flag, mode = flag_mode(w)
    return f"chaos: {flag}" + (f" ({mode})" if mode else "")


def shade_color(w: Mapping[str, Any]) -> str:
    return SHADES.get(flag_mode(w), "tab:gray")


def _shade(
    ax: Axes, windows: Sequence[Mapping[str, Any]], start: float, end: float, *, over: bool = False
) -> None:
    """Shade each chaos window, one colour per flag and mode, labelled once each."""
    seen: set[str] = set()
    for w in windows:
        stop = w["end"] if w.get("end") is not None else end
        label = shade_label(w)
        ax.axvspan(
            w["start"] - start,
            stop - start,
            color=shade_color(w),
            alpha=0.6 if over else 0.18,
            label=None if label in seen else label,
            zorder=3 if over else 0,  # over bars, which would hide a span drawn beneath them
            hatch="//" if over else None,
            fill=not over,
        )
        seen.add(label)


def _save(fig: Figure, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=DPI)
    return name


def gapped(
    x: Sequence[float | None], ys: Sequence[float | None], step: float | None = None
) -> tuple[list[float], list[float]]:
    """Points with NaN where there is no value or where x jumps by more than 1.5 ``step`` (a time
    bucket with no record): matplotlib breaks a line at NaN, so no line crosses a gap."""
    xs: list[float] = []
    out: list[float] = []
    nan = float("nan")
    prev: float | None = None
    for a, b in zip(x, ys, strict=False):
        if a is None:
            continue
        if step and prev is not None and a - prev > 1.5 * step:
            xs.append((a + prev) / 2)
            out.append(nan)
        xs.append(a)
        out.append(nan if b is None else float(b))
        prev = a
    return xs, out


def _line(
    ax: Axes,
    x: Sequence[float | None],
    ys: Sequence[float | None],
    label: str,
    step: float | None = None,
    **kw: Any,
) -> None:
    xs, vals = gapped(x, ys, step)
    if any(v == v for v in vals):  # some value that is not NaN
        kw.setdefault("marker", ".")
        kw.setdefault("markersize", 3)
        ax.plot(xs, vals, label=label, **kw)


def latency_chart(data: Mapping[str, Any], out_dir: Path) -> str | None:
    s, run = data["series"], data["run"]
    if not s.get("t"):
        return None
    x = _x(s, run["start_ts"])
    fig = Figure(figsize=(10, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    step = s["bucket_s"]
    _line(top, x, s["chat_p50_ms"], "p50 (service)", step)
    _line(top, x, s["chat_p95_ms"], "p95 (service)", step)
    _line(top, x, s["chat_intended_p95_ms"], "p95 (intended start)", step, linestyle="--")
    gate = _threshold(data, "chat_p95_ms")
    if gate is not None:
        top.axhline(
            gate, color="red", linewidth=0.8, linestyle=":", label=f"{_gate_word(data)} p95 {gate:g} ms"
        )
    windows = data["chaos"]["windows"]
    _shade(top, windows, run["start_ts"], run["end_ts"])
    top.set_ylabel("chat latency (ms)")
    top.set_title("Chat lane latency over time (chaos windows shaded)")
    top.legend(loc="upper left", fontsize=8)
    _line(
        bottom,
        x,
        [None if v is None else 100 * v for v in s["chat_error_rate"]],
        "error %",
        step,
        color="tab:red",
    )
    _shade(bottom, windows, run["start_ts"], run["end_ts"])
    bottom.set_ylabel("errors (%)")
    bottom.set_xlabel(f"seconds since start (buckets of {s['bucket_s']:g} s)")
    return _save(fig, out_dir, "chart_latency.png")


def stream_chart(data: Mapping[str, Any], out_dir: Path) -> str | None:
    """TTFT, TPOT and ITL p95/p99 per time bucket, for a run that streamed (report v4)."""
    s, run = data["series"], data["run"]
    if not s.get("t") or not any(v is not None for v in s.get("ttft_p95_ms") or ()):
        return None
    x = _x(s, run["start_ts"])
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    step = s["bucket_s"]
    _line(ax, x, s["ttft_p95_ms"], "TTFT p95", step)
    _line(ax, x, s["ttft_p99_ms"], "TTFT p99", step, linestyle="--")
    _line(ax, x, s["tpot_p95_ms"], "TPOT p95", step)
    _line(ax, x, s["tpot_p99_ms"], "TPOT p99", step, linestyle="--")
    # ITL from the interval log (absent without a local tokenizer, or in a report before it)
    _line(ax, x, s.get("itl_p95_ms") or [], "ITL p95", step)
    _line(ax, x, s.get("itl_p99_ms") or [], "ITL p99", step, linestyle="--")
    for name in STREAM_GATES:
        gate = _threshold(data, name)
        if gate is not None:
            label = f"{_gate_word(data)} {name.split('_')[0].upper()} {name.split('_')[1]} {gate:g} ms"
            ax.axhline(gate, color="red", linewidth=0.8, linestyle=":", label=label)
    _shade(ax, data["chaos"]["windows"], run["start_ts"], run["end_ts"])
    ax.set_ylabel("ms")
    ax.set_xlabel(f"seconds since start (buckets of {s['bucket_s']:g} s)")
    ax.set_title("Streamed chats: time to first token, per output token, between tokens (chaos shaded)")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out_dir, "chart_stream.png")


def sla_chart(data: Mapping[str, Any], out_dir: Path) -> str | None:
    s, run = data["series"], data["run"]
    if not any(v for v in s.get("traces", [])):
        return None
    x = _x(s, run["start_ts"])
    step = s["bucket_s"]
    fig = Figure(figsize=(10, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    _line(top, x, s["sentence_p95_ms"], "sentence p95", step, color="tab:blue")
    _line(top, x, s["token_p95_ms"], "token p95", step, color="tab:orange")
    for name, color in (("sentence_p95_ms", "tab:blue"), ("token_p95_ms", "tab:orange")):
        gate = _threshold(data, name)
        if gate is not None:
            label = f"{_gate_word(data)} {name.split('_')[0]} p95 {gate:g} ms"
            top.axhline(gate, color=color, linewidth=0.8, linestyle=":", label=label)
    _shade(top, data["chaos"]["windows"], run["start_ts"], run["end_ts"])
    top.set_ylabel("chat answer -> terminal (ms)")
    top.set_title("Explanation SLA p95, placed when each trace reached its terminal state")
    top.legend(loc="upper left", fontsize=8)
    if s.get("expl_offered_rps"):
        _line(bottom, x, s["expl_offered_rps"], "offered / s", step, color="tab:gray")
        _line(bottom, x, s["expl_completed_rps"], "completed / s", step, color="tab:green")
        bottom.set_ylabel("explanations / s")
    else:  # a v2 report.json
        _line(
            bottom,
            x,
            [None if v is None else 100 * v for v in s["expired_failed_rate"]],
            "expired+failed %",
            step,
            color="tab:red",
        )
        bottom.set_ylabel("expired+failed (%)")
    _shade(bottom, data["chaos"]["windows"], run["start_ts"], run["end_ts"])
    bottom.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel(f"seconds since start (buckets of {step:g} s)")
    return _save(fig, out_dir, "chart_sla.png")


def backpressure_chart(data: Mapping[str, Any], out_dir: Path) -> str | None:
    """Admission outcomes per bucket (from the chat answers), rate-limit spikes shaded, and the
    soak's sampled backpressure level when there is one."""
    s, run = data["series"], data["run"]
    admissions: Mapping[str, list[int]] = s.get("admissions") or {}
    level = ((data.get("soak") or {}).get("series") or {}).get("backpressure_level")
    if not admissions and not level:
        return None
    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    x = _x(s, run["start_ts"])
    bottom = [0.0] * len(x)
    width = s["bucket_s"]
    for state, counts in sorted(admissions.items()):
        rates = [c / width for c in counts]
        color = ADMISSION_COLORS.get(state)
        ax.bar(x, rates, width=width, bottom=bottom, align="edge", label=f"explanation {state}", color=color)
        bottom = [a + b for a, b in zip(bottom, rates, strict=True)]
    spikes = [w for w in data["chaos"]["windows"] if w["flag"] == "rate-limit-spike"]
    _shade(ax, spikes, run["start_ts"], run["end_ts"], over=True)
    ax.set_ylabel("attached chats / s by admission outcome")
    ax.set_xlabel("seconds since start")
    title = "Backpressure: admission outcomes per second"
    title += " (rate-limit spikes shaded)" if spikes else ""
    title += "" if level else "; level not sampled in this run (no soak series)"
    ax.set_title(title, fontsize=10)
    if level:
        t_h = (data["soak"]["series"].get("t_h") or [])[: len(level)]
        twin = ax.twinx()
        _line(
            twin,
            [3600 * t for t in t_h],
            level,
            "backpressure level (soak sample)",
            color="black",
            drawstyle="steps-post",
        )
        twin.set_ylabel("backpressure level (0 none, 1 soft, 2 hard)")
        twin.set_ylim(-0.1, 2.1)
        twin.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out_dir, "chart_backpressure.png")


def soak_chart(data: Mapping[str, Any], out_dir: Path) -> str | None:
    soak = data.get("soak") or {}
    series: Mapping[str, list[float | None]] = soak.get("series") or {}
    t_h = series.get("t_h")
    names = [n for n in SOAK_FIRST if n in series]
    names += [n for n in series if n not in names and n not in ("t_h", "segment")]
    names = names[:16]
    if not t_h or not names:
        return None
    breaching = {r["segment"] for r in soak.get("segments", []) if r["breaches"]}
    numbers = [r["segment"] for r in soak.get("segments", [])]
    fig = Figure(figsize=(11, 2.2 * ((len(names) + 1) // 2)))
    axes = fig.subplots((len(names) + 1) // 2, 2, sharex=True, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        title, scale = readable(name)
        _line(ax, t_h, [None if v is None else v * scale for v in series[name]], title)
        for i, seg in enumerate(numbers[: len(t_h)]):
            if seg in breaching:
                ax.axvline(t_h[i], color="red", alpha=0.3, linewidth=3)
        ax.set_title(title, fontsize=9)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for ax in axes[max(0, len(names) - 2) : len(names)]:
        ax.set_xlabel("hours since the soak started")
        ax.xaxis.set_tick_params(labelbottom=True)
    fig.suptitle("Soak: one point per segment (red: segment broke an SLO)")
    return _save(fig, out_dir, "chart_soak.png")


# name suffix -> (unit shown, factor): memory in MB, rates in %, as a person reads them
UNITS = (("_bytes", "MB", 1e-6), ("_rate", "%", 100.0), ("_ms", "ms", 1.0), ("_s", "s", 1.0))


def readable(name: str) -> tuple[str, float]:
    """A series name as a title with its unit, and the factor its values need: ``gateway_rss_bytes``
    -> ``("gateway rss (MB)", 1e-6)``."""
    for suffix, unit, factor in UNITS:
        if name.endswith(suffix):
            return f"{name[: -len(suffix)].replace('_', ' ')} ({unit})", factor
    return name.replace("_", " "), 1.0


def _gate_word(data: Mapping[str, Any]) -> str:
    """'SLO' for a gate the run was judged by; 'reference' for the runbook's defaults."""
    return "SLO" if data["slo"].get("source") == "summary.json" else "reference (not gated)"


def _threshold(data: Mapping[str, Any], name: str) -> float | None:
    for g in data["slo"]["gates"]:
        if g["name"] == name:
            return float(g["threshold"])
    return None


def render_charts(data: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """Every chart the data supports: ``{"latency": "chart_latency.png", ...}``."""
    out = {}
    for key, fn in (
        ("latency", latency_chart),
        ("stream", stream_chart),
        ("sla", sla_chart),
        ("backpressure", backpressure_chart),
        ("soak", soak_chart),
    ):
        name = fn(data, out_dir)
        if name:
            out[key] = name
    return out
