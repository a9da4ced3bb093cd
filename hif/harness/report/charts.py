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

SHADES = {
    "slow-sae": "tab:orange",
    "drop-s3": "tab:red",
    "fail-attribution": "tab:purple",
    "rate-limit-spike": "tab:brown",
}
DPI = 100
# The soak panels that matter most come first (latency, errors, memory and fds for leaks).
SOAK_FIRST = (
    "chat_rps",
    "chat_p95_ms",
    "chat_error_rate",
    "sentence_p95_ms",
    "token_p95_ms",
    "expired_failed_rate",
    "gateway_rss_bytes",
    "explainer_rss_bytes",
    "explainer_workers_rss_bytes",
    "gateway_open_fds",
    "explainer_open_fds",
    "queue_lag_s",
    "backpressure_level",
    "attach_rate",
)


def _x(series: Mapping[str, Any], start: float) -> list[float]:
    return [t - start for t in series.get("t", [])]


def _shade(ax: Axes, windows: Sequence[Mapping[str, Any]], start: float, end: float) -> None:
    """Shade each chaos window and label it once per flag."""
    seen: set[str] = set()
    for w in windows:
        flag = str(w["flag"])
        stop = w["end"] if w.get("end") is not None else end
        label = None if flag in seen else f"chaos: {flag}"
        seen.add(flag)
        ax.axvspan(
            w["start"] - start, stop - start, color=SHADES.get(flag, "tab:gray"), alpha=0.18, label=label
        )


def _save(fig: Figure, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=DPI)
    return name


def _line(ax: Axes, x: Sequence[float | None], ys: Sequence[float | None], label: str, **kw: Any) -> None:
    pts = [(a, b) for a, b in zip(x, ys, strict=False) if a is not None and b is not None]
    if pts:
        ax.plot([a for a, _ in pts], [b for _, b in pts], label=label, **kw)


def latency_chart(data: Mapping[str, Any], out_dir: Path) -> str | None:
    s, run = data["series"], data["run"]
    if not s.get("t"):
        return None
    x = _x(s, run["start_ts"])
    fig = Figure(figsize=(10, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    _line(top, x, s["chat_p50_ms"], "p50 (service)")
    _line(top, x, s["chat_p95_ms"], "p95 (service)")
    _line(top, x, s["chat_intended_p95_ms"], "p95 (intended start)", linestyle="--")
    gate = _threshold(data, "chat_p95_ms")
    if gate is not None:
        top.axhline(gate, color="red", linewidth=0.8, linestyle=":", label=f"SLO p95 {gate:g} ms")
    windows = data["chaos"]["windows"]
    _shade(top, windows, run["start_ts"], run["end_ts"])
    top.set_ylabel("chat latency (ms)")
    top.set_title("Chat lane latency over time (chaos windows shaded)")
    top.legend(loc="upper left", fontsize=8)
    _line(
        bottom, x, [None if v is None else 100 * v for v in s["chat_error_rate"]], "error %", color="tab:red"
    )
    _shade(bottom, windows, run["start_ts"], run["end_ts"])
    bottom.set_ylabel("errors (%)")
    bottom.set_xlabel(f"seconds since start (buckets of {s['bucket_s']:g} s)")
    return _save(fig, out_dir, "chart_latency.png")


def sla_chart(data: Mapping[str, Any], out_dir: Path) -> str | None:
    s, run = data["series"], data["run"]
    if not any(v for v in s.get("traces", [])):
        return None
    x = _x(s, run["start_ts"])
    fig = Figure(figsize=(10, 5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    _line(top, x, s["sentence_p95_ms"], "sentence p95")
    _line(top, x, s["token_p95_ms"], "token p95")
    for name, color in (("sentence_p95_ms", "tab:blue"), ("token_p95_ms", "tab:orange")):
        gate = _threshold(data, name)
        if gate is not None:
            top.axhline(gate, color=color, linewidth=0.8, linestyle=":", label=f"SLO {name} {gate:g}")
    _shade(top, data["chaos"]["windows"], run["start_ts"], run["end_ts"])
    top.set_ylabel("chat answer -> terminal (ms)")
    top.set_title("Explanation SLA over time")
    top.legend(loc="upper left", fontsize=8)
    _line(
        bottom,
        x,
        [None if v is None else 100 * v for v in s["expired_failed_rate"]],
        "expired+failed %",
        color="tab:red",
    )
    bottom.set_ylabel("expired+failed (%)")
    bottom.set_xlabel("seconds since start")
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
        ax.bar(x, rates, width=width, bottom=bottom, align="edge", label=f"explanation {state}")
        bottom = [a + b for a, b in zip(bottom, rates, strict=True)]
    spikes = [w for w in data["chaos"]["windows"] if w["flag"] == "rate-limit-spike"]
    _shade(ax, spikes, run["start_ts"], run["end_ts"])
    ax.set_ylabel("attached chats / s by admission outcome")
    ax.set_xlabel("seconds since start")
    ax.set_title("Backpressure: admissions over time (rate-limit spikes shaded)")
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
        twin.set_ylabel("level (0 none, 1 soft, 2 hard)")
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
        _line(ax, t_h, series[name], name, marker=".")
        for i, seg in enumerate(numbers[: len(t_h)]):
            if seg in breaching:
                ax.axvline(t_h[i], color="red", alpha=0.3, linewidth=3)
        ax.set_title(name, fontsize=9)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("Soak: one point per segment (red: segment broke an SLO)")
    return _save(fig, out_dir, "chart_soak.png")


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
        ("sla", sla_chart),
        ("backpressure", backpressure_chart),
        ("soak", soak_chart),
    ):
        name = fn(data, out_dir)
        if name:
            out[key] = name
    return out
