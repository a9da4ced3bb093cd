"""Turn scanned aggregates into the report's sections (headline, windows, series, SLOs)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hif.harness import gates
from hif.harness import goodput as gp
from hif.harness.load.settings import RUNBOOK_SLOS
from hif.harness.report.hist import SparseHist, to_latency_histogram
from hif.harness.report.saturation import part_saturated
from hif.harness.report.scan import CHAT, EXPLANATION, STREAM_LABELS, Partial
from hif.harness.report.windows import IntervalLog, Parts, Window

DEFAULT_SLOS = RUNBOOK_SLOS  # the runbook's example targets: reference lines unless a run gated on them
# Recovered: the chat p95 back within 10 % (or 5 ms) of pre and the error rate within one point,
# for RECOVER_BUCKETS buckets in a row. The explanation lane recovers when its complete share is
# back within RECOVER_SHARE_SLACK of pre and each granularity's SLA p95 within 10 % (or 50 ms).
RECOVER_P95_RATIO, RECOVER_P95_SLACK_MS, RECOVER_ERROR_SLACK, RECOVER_BUCKETS = 1.10, 5.0, 0.01, 3
RECOVER_SHARE_SLACK, RECOVER_SLA_SLACK_MS = 0.05, 50.0

CellPred = Callable[[int, int], bool]


def _rate(n: float, d: float) -> float | None:
    return n / d if d else None


def _hist(
    source: Mapping[tuple[str, int, str], Mapping[int, int]],
    kind: str,
    label: str,
    keep: Callable[[int], bool],
    figures: int,
) -> SparseHist:
    h = SparseHist(figures=figures)
    for (k, key, name), counts in source.items():
        if k == kind and name == label and keep(key):
            h += SparseHist(counts)
    return h


def chat_stats(
    p: Partial, keep: CellPred, duration_s: float | None, hists: Callable[[str], SparseHist]
) -> dict[str, Any]:
    """Requests, status classes, rates and latency percentiles for the cells ``keep`` selects."""
    n = ok = n4 = n5 = late = dropped = good = 0
    classes: dict[str, int] = {}
    admissions: dict[str, int] = {}
    for (tb, seg, cat), c in p.chat_counts.items():
        if not keep(tb, seg):
            continue
        status, error_class, state, _chaos, is_late, is_good = cat
        n += c
        good += c if is_good else 0
        ok += c if (200 <= status < 300 and error_class is None) else 0
        n4 += c if 400 <= status < 500 else 0
        n5 += c if 500 <= status < 600 else 0
        late += c if is_late else 0
        dropped += c if error_class == "dropped" else 0
        if error_class is not None:
            classes[error_class] = classes.get(error_class, 0) + c
        if state is not None:
            admissions[str(state)] = admissions.get(str(state), 0) + c
    return {
        "requests": n,
        "ok": ok,
        "errors": n - ok,
        "rps": _rate(n, duration_s or 0.0),
        "error_rate": _rate(n - ok, n),
        "rate_4xx": _rate(n4, n),
        "rate_5xx": _rate(n5, n),
        "late": late,
        "dropped": dropped,
        "error_classes": dict(sorted(classes.items())),
        "admissions": dict(sorted(admissions.items())),
        "latency_ms": hists("service").summary(),
        "intended_latency_ms": hists("intended").summary(),
        **gp.rates(good, n, duration_s or 0.0),
        **stream_stats(hists),
    }


def stream_stats(hists: Callable[[str], SparseHist]) -> dict[str, Any]:
    """``{"stream": ...}`` in summary.json's shape (so hif.harness.gates reads it) when the cells
    hold streamed chats, else nothing. ITL is not here: a chat record carries no per-token gaps
    (:func:`headline` and :func:`part_stats` add it from the interval log)."""
    by_label = {label: hists(label) for label in STREAM_LABELS}
    streams = max(h.total for h in by_label.values())
    if not streams:
        return {}
    return {"stream": {"streams": streams, **{f"{k}_ms": h.summary() for k, h in by_label.items()}}}


def explanation_stats(
    p: Partial, keep: CellPred, hists: Callable[[str], SparseHist], duration_s: float | None = None
) -> dict[str, Any]:
    """Trace states and shares, SLA percentiles; ``offered_rps`` (traces the chats asked for) and
    ``completed_rps`` (complete ones), by chat answer time, when ``duration_s`` is given."""
    states: dict[str, int] = {}
    by_gran: dict[str, int] = {}
    for (tb, seg, cat), c in p.expl_counts.items():
        if keep(tb, seg):
            states[cat[0]] = states.get(cat[0], 0) + c
            by_gran[cat[1]] = by_gran.get(cat[1], 0) + c
    total = sum(states.values())
    pct = {
        f"{s}_rate": _rate(states.get(s, 0), total)
        for s in ("complete", "expired", "failed", "orphaned", "shed", "rate_limited")
    }
    return {
        "traces": total,
        "states": dict(sorted(states.items())),
        "by_granularity": dict(sorted(by_gran.items())),
        **pct,
        "expired_failed_rate": _rate(states.get("expired", 0) + states.get("failed", 0), total),
        # what the explainer was asked to do (see hif/harness/report/saturation.py)
        "offered_rps": _rate(
            total - states.get("orphaned", 0) - states.get("rate_limited", 0), duration_s or 0.0
        ),
        "completed_rps": _rate(states.get("complete", 0), duration_s or 0.0),
        "sla_ms": {g: hists(g).summary() for g in sorted({"sentence", "token", *by_gran})},
    }


# clock slack between the runner's start and its first send (the same process, one wall clock)
LOAD_WINDOW_SLACK_S = 1.0


def load_window_s(summaries: Iterable[Mapping[str, Any]], run: tuple[float, float]) -> float | None:
    """The seconds the load runner's rates count over: its load window (``started_at`` to
    ``load_ended_at``), from the first shard's start to the last one's end (shards run side by
    side). None without a summary that has one, or when records start before it (files appended
    to by several runs, as a soak's segments are, hold one run's summary): then no window covers
    them all."""
    spans = [
        (float(s["started_at"]), float(s["load_ended_at"]))
        for s in summaries
        if all(isinstance(s.get(k), int | float) and not isinstance(s.get(k), bool)
               for k in ("started_at", "load_ended_at"))
    ]  # fmt: skip
    if not spans:
        return None
    start, end = min(a for a, _ in spans), max(b for _, b in spans)
    return end - start if end > start and run[0] >= start - LOAD_WINDOW_SLACK_S else None


def headline(
    p: Partial, run: tuple[float, float], itl: IntervalLog | None = None, load_s: float | None = None
) -> dict[str, Any]:
    """The run's figures. Goodput per second divides by ``load_s`` (the runner's load window,
    :func:`load_window_s`) when known, so the report's figure is the runner's by construction;
    else by the records' span."""
    every: CellPred = lambda _tb, _seg: True  # noqa: E731
    duration = max(run[1] - run[0], 1e-9)
    chat = chat_stats(p, every, duration, lambda n: _hist(p.seg_hist, CHAT, n, lambda _k: True, 3))
    if load_s is not None:
        chat.update(gp.rates(chat["goodput"], chat["requests"], load_s))
    itl_all = itl.within(-math.inf, math.inf) if itl is not None else SparseHist()
    if itl_all.total and "stream" in chat:
        chat["stream"]["itl_ms"] = itl_all.summary()
    expl = explanation_stats(
        p, every, lambda n: _hist(p.seg_hist, EXPLANATION, n, lambda _k: True, 3), duration
    )
    expl["sla_bound_ms"] = {g: SparseHist(h).summary() for g, h in sorted(p.bound_hist.items())}
    expl["polls"] = p.polls
    return {"chat": chat, "explanations": expl, "histograms": _encoded(p, itl_all)}


def _encoded(p: Partial, itl: SparseHist) -> dict[str, str]:
    """The run's histograms in stats.LatencyHistogram's encoding (tags as in histograms.hlog), so a
    reader can merge reports exactly without the JSONL files."""
    out = {}
    tags = (
        (CHAT, "service", "chat.service"),
        (CHAT, "intended", "chat.intended"),
        (EXPLANATION, "sentence", "sla.sentence"),
        (EXPLANATION, "token", "sla.token"),
        (CHAT, "ttft", "stream.ttft"),  # the stream tags of hif.harness.load.stream
        (CHAT, "intended_ttft", "stream.ttft_intended"),
        (CHAT, "tpot", "stream.tpot"),
    )
    for kind, label, tag in tags:
        h = _hist(p.seg_hist, kind, label, lambda _k: True, 3)
        if h.total:
            out[tag] = to_latency_histogram(h).encode()
    if itl.total:
        out["stream.itl"] = to_latency_histogram(itl).encode()
    return out


def _seg_index(bounds: tuple[float, ...], x: float) -> int:
    if math.isinf(x):
        return 0 if x < 0 else len(bounds) + 1
    return bisect.bisect_right(bounds, x)


def _seg_range(bounds: tuple[float, ...], a: float, b: float) -> Callable[[int], bool]:
    """Segments whose records have ``a <= ts < b``; a and b are scan boundaries (or infinite)."""
    lo, hi = _seg_index(bounds, a), _seg_index(bounds, b)
    return lambda seg: lo <= seg < hi


def _tb_range(t0: float, bucket_s: float, a: float, b: float) -> Callable[[int], bool]:
    lo, hi = math.floor((a - t0) / bucket_s + 1e-9), math.ceil((b - t0) / bucket_s - 1e-9)
    return lambda tb: lo <= tb < hi


def part_stats(
    p: Partial,
    interval: tuple[float, float],
    *,
    exact: bool,
    bounds: tuple[float, ...],
    t0: float,
    bucket_s: float,
    run: tuple[float, float],
    itl: IntervalLog | None = None,
) -> dict[str, Any]:
    """Stats of one pre/during/post part: by segments (event log) or by time buckets (records);
    ITL from the interval log, by each interval's midpoint (see hif.harness.report.windows)."""
    a, b = interval
    if exact:
        segs = _seg_range(bounds, a, b)
        keep: CellPred = lambda _tb, seg: segs(seg)  # noqa: E731
        figures, source, key_ok = 3, p.seg_hist, segs
    else:
        tbs = _tb_range(t0, bucket_s, a, b)
        keep, figures, source, key_ok = (lambda tb, _seg: tbs(tb)), 2, p.tb_hist, tbs
    seconds = max(0.0, min(b, run[1]) - max(a, run[0]))
    chat = chat_stats(p, keep, seconds, lambda n: _hist(source, CHAT, n, key_ok, figures))
    expl = explanation_stats(p, keep, lambda n: _hist(source, EXPLANATION, n, key_ok, figures), seconds)
    return {
        "from": a,
        "to": b,
        "seconds": seconds,
        "chat": _brief_chat(chat, itl.within(a, b) if itl is not None else SparseHist()),
        "explanations": _brief_expl(expl),
    }


def _brief_chat(c: dict[str, Any], itl: SparseHist) -> dict[str, Any]:
    return {
        "requests": c["requests"],
        "rps": c["rps"],
        "error_rate": c["error_rate"],
        "p50_ms": c["latency_ms"]["p50_ms"],
        "p95_ms": c["latency_ms"]["p95_ms"],
        "intended_p95_ms": c["intended_latency_ms"]["p95_ms"],
        "admissions": c["admissions"],
        "goodput_rps": c["goodput_rps"],
        "goodput_share": c["goodput_share"],
        **{f"{k}_{p}_ms": _stream_pct(c, k, p) for k in ("ttft", "tpot") for p in ("p95", "p99")},
        **{f"itl_p{p:g}_ms": v for p, v in itl.percentiles_ms([95.0, 99.0]).items()},
    }


def _stream_pct(c: Mapping[str, Any], name: str, p: str) -> float | None:
    stream = c.get("stream")
    return stream[f"{name}_ms"][f"{p}_ms"] if stream else None


LANE_SHARES = (
    "complete_rate",
    "shed_rate",
    "rate_limited_rate",
    "expired_rate",
    "failed_rate",
    "orphaned_rate",
)


def _brief_expl(e: dict[str, Any]) -> dict[str, Any]:
    """The explanation lane in full: every state's share, offered vs completed, SLA p95s."""
    return {
        "traces": e["traces"],
        **{k: e[k] for k in LANE_SHARES},
        "offered_rps": e["offered_rps"],
        "completed_rps": e["completed_rps"],
        "sentence_p95_ms": e["sla_ms"]["sentence"]["p95_ms"],
        "token_p95_ms": e["sla_ms"]["token"]["p95_ms"],
        "expired_failed_rate": e["expired_failed_rate"],
    }


def _delta(x: float | None, base: float | None) -> float | None:
    return None if x is None or base is None else x - base


def window_report(p: Partial, w: Window, pt: Parts, series: dict[str, Any], **kw: Any) -> dict[str, Any]:
    pre, during, post = (part_stats(p, iv, **kw) for iv in (pt.pre, pt.during, pt.post))
    run_start = kw["run"][0]
    end = pt.during[1] if w.end is not None else None
    recovered, recover_s = recovery(series, end, pre["chat"])
    expl_recovered, expl_recover_s = explanation_recovery(series, end, pre["explanations"])
    deltas = {}
    for name, part in (("during", during), ("post", post)):
        c, e, c0, e0 = part["chat"], part["explanations"], pre["chat"], pre["explanations"]
        deltas[name] = {
            "chat_p95_ms": _delta(c["p95_ms"], c0["p95_ms"]),
            "error_rate": _delta(c["error_rate"], c0["error_rate"]),
            "goodput_share": _delta(c["goodput_share"], c0["goodput_share"]),
            "ttft_p95_ms": _delta(c["ttft_p95_ms"], c0["ttft_p95_ms"]),
            "tpot_p95_ms": _delta(c["tpot_p95_ms"], c0["tpot_p95_ms"]),
            "itl_p95_ms": _delta(c["itl_p95_ms"], c0["itl_p95_ms"]),
            **{k: _delta(e[k], e0[k]) for k in (*LANE_SHARES, "sentence_p95_ms", "token_p95_ms")},
            "expired_failed_rate": _delta(e["expired_failed_rate"], e0["expired_failed_rate"]),
        }
    return {
        "flag": w.flag,
        "params": dict(w.params),
        "start": w.start if math.isfinite(w.start) else run_start,
        "end": w.end,
        "pre": pre,
        "during": during,
        "post": post,
        "delta": deltas,
        "recovered": recovered,
        "recover_s": recover_s,
        "recover": {
            "chat": {"recovered": recovered, "s": recover_s},
            "explanations": {"recovered": expl_recovered, "s": expl_recover_s},
        },
        # the explainer could not keep up before the fault: explanation-lane deltas say little
        "explanations_masked": part_saturated(pre["explanations"]),
    }


def recovery(
    series: dict[str, Any], end: float | None, pre: Mapping[str, Any]
) -> tuple[bool | None, float | None]:
    """(recovered, seconds): from the window's end to the first time bucket from which the chat lane
    is back to its pre-window p95 and error rate for RECOVER_BUCKETS buckets in a row (fewer at the
    run's end). ``recovered`` is None when it cannot tell: open window, no pre data, no bucket after."""
    base_p95, base_err = pre.get("p95_ms"), pre.get("error_rate")
    starts = series["t"]
    first = bisect.bisect_left(starts, end - 1e-9) if end is not None else len(starts)
    if base_p95 is None or base_err is None or first >= len(starts):
        return None, None
    ok = [
        p95 is not None
        and err is not None
        and p95 <= max(base_p95 * RECOVER_P95_RATIO, base_p95 + RECOVER_P95_SLACK_MS)
        and err <= base_err + RECOVER_ERROR_SLACK
        for p95, err in zip(series["chat_p95_ms"], series["chat_error_rate"], strict=True)
    ]
    for i in range(first, len(starts)):
        if all(ok[i : i + RECOVER_BUCKETS]):
            return True, max(0.0, starts[i] - float(end or 0.0))
    return False, None


def explanation_recovery(
    series: dict[str, Any], end: float | None, pre: Mapping[str, Any]
) -> tuple[bool | None, float | None]:
    """As :func:`recovery`, for the explanation lane: complete share back within
    RECOVER_SHARE_SLACK of pre and each granularity's SLA p95 within 10 % (or 50 ms) of pre, for
    RECOVER_BUCKETS buckets in a row. A bucket with no trace neither helps nor breaks the run."""
    base_share = pre.get("complete_rate")
    starts = series["t"]
    first = bisect.bisect_left(starts, end - 1e-9) if end is not None else len(starts)
    if base_share is None or first >= len(starts):
        return None, None

    def sla_ok(value: float | None, base: float | None) -> bool:
        return (
            value is None
            or base is None
            or value <= max(base * RECOVER_P95_RATIO, base + RECOVER_SLA_SLACK_MS)
        )

    ok = [
        share is not None
        and share >= base_share - RECOVER_SHARE_SLACK
        and sla_ok(sp, pre.get("sentence_p95_ms"))
        and sla_ok(tp, pre.get("token_p95_ms"))
        for share, sp, tp in zip(
            series["expl_complete_rate"], series["sentence_p95_ms"], series["token_p95_ms"], strict=True
        )
    ]
    for i in range(first, len(starts)):
        if all(ok[i : i + RECOVER_BUCKETS]):
            return True, max(0.0, starts[i] - float(end or 0.0))
    return False, None


# Streamed chats per time bucket (null in a bucket without streams, and in a non-streamed run)
STREAM_SERIES = ("ttft_p95_ms", "ttft_p99_ms", "tpot_p95_ms", "tpot_p99_ms")
# ITL per time bucket, from the interval log (null without one: no local tokenizer, or no hlog)
ITL_SERIES = ("itl_p95_ms", "itl_p99_ms")


def time_series(p: Partial, t0: float, bucket_s: float, itl: IntervalLog | None = None) -> dict[str, Any]:
    """One point per time bucket (2-significant-figure percentiles) for charts and recovery; ITL
    from ``itl``'s intervals whose midpoint lies in the bucket (as for the chaos windows)."""
    tbs = sorted(
        {tb for tb, _, _ in p.chat_counts}
        | {tb for tb, _, _ in p.expl_counts}
        | {tb for kind, tb, _ in p.tb_hist if kind == EXPLANATION}  # SLAs sit at terminal time
    )
    out: dict[str, Any] = {
        k: []
        for k in (
            "t",
            "chat_requests",
            "chat_rps",
            "chat_p50_ms",
            "chat_p95_ms",
            "chat_intended_p95_ms",
            "chat_error_rate",
            "chat_4xx_rate",
            "chat_5xx_rate",
            "sentence_p95_ms",
            "token_p95_ms",
            "expired_failed_rate",
            "traces",
            "goodput_rps",
            "expl_offered_rps",
            "expl_completed_rps",
            "expl_complete_rate",
            *STREAM_SERIES,
            *ITL_SERIES,
        )
    }
    out["bucket_s"] = bucket_s
    out["admissions"] = {}
    for tb in tbs:
        c, e = _bucket_stats(p, tb, bucket_s)
        for key, value in (
            ("t", t0 + tb * bucket_s),
            ("chat_requests", c["requests"]),
            ("chat_rps", c["rps"]),
            ("chat_p50_ms", c["latency_ms"]["p50_ms"]),
            ("chat_p95_ms", c["latency_ms"]["p95_ms"]),
            ("chat_intended_p95_ms", c["intended_latency_ms"]["p95_ms"]),
            ("chat_error_rate", c["error_rate"]),
            ("chat_4xx_rate", c["rate_4xx"]),
            ("chat_5xx_rate", c["rate_5xx"]),
            ("sentence_p95_ms", e["sla_ms"]["sentence"]["p95_ms"]),
            ("token_p95_ms", e["sla_ms"]["token"]["p95_ms"]),
            ("expired_failed_rate", e["expired_failed_rate"]),
            ("traces", e["traces"]),
            ("goodput_rps", c["goodput_rps"]),
            ("expl_offered_rps", e["offered_rps"]),
            ("expl_completed_rps", e["completed_rps"]),
            ("expl_complete_rate", e["complete_rate"]),
            *((k, _stream_pct(c, k.split("_")[0], k.split("_")[1])) for k in STREAM_SERIES),
            *_itl_point(itl, t0 + tb * bucket_s, bucket_s),
        ):
            out[key].append(value)
        for state in c["admissions"]:
            out["admissions"].setdefault(state, [0] * (len(out["t"]) - 1))
        for state, column in out["admissions"].items():
            column.append(c["admissions"].get(state, 0))
    return out


def _itl_point(itl: IntervalLog | None, start: float, bucket_s: float) -> list[tuple[str, float | None]]:
    h = itl.within(start, start + bucket_s) if itl is not None else SparseHist()
    pct = h.percentiles_ms([95.0, 99.0])
    return [("itl_p95_ms", pct[95.0]), ("itl_p99_ms", pct[99.0])]


def _bucket_stats(p: Partial, tb: int, bucket_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    def one(t: int, _seg: int) -> bool:
        return t == tb

    def this(k: int) -> bool:
        return k == tb

    chat = chat_stats(p, one, bucket_s, lambda n: _hist(p.tb_hist, CHAT, n, this, 2))
    return chat, explanation_stats(p, one, lambda n: _hist(p.tb_hist, EXPLANATION, n, this, 2), bucket_s)


def flag_buckets(p: Partial) -> dict[str, set[int]]:
    """Time buckets in which some record carried each chaos flag."""
    out: dict[str, set[int]] = {}
    for (tb, _seg, cat), _n in p.chat_counts.items():
        for flag in cat[3]:
            out.setdefault(str(flag), set()).add(tb)
    for (tb, _seg, cat), _n in p.expl_counts.items():
        for flag in cat[2]:
            out.setdefault(str(flag), set()).add(tb)
    return out


def slo_table(summaries: Iterable[Mapping[str, Any]], head: Mapping[str, Any]) -> dict[str, Any]:
    """The run's gates (``slo.gates[].threshold`` in summary.json) judged on the records.

    No gates: the verdict is None ("not gated"), as in summary.json and the runner's exit code, and
    the runbook's example targets are judged as ``reference`` lines that decide nothing."""
    targets: dict[str, float] = {}
    runner_values: dict[str, Any] = {}  # gates the records cannot recompute: the runner's value
    for s in summaries:
        for g in (s.get("slo") or {}).get("gates") or []:
            if (
                isinstance(g, Mapping)
                and g.get("name") in gates.REGISTRY
                and isinstance(g.get("threshold"), int | float)
            ):
                targets[str(g["name"])] = float(g["threshold"])
                runner_values.setdefault(str(g["name"]), g.get("value"))
    chat, expl = head["chat"], head["explanations"]
    values = {
        "chat_p95_ms": chat["latency_ms"]["p95_ms"],
        "error_rate": chat["error_rate"],
        "sentence_p95_ms": expl["sla_ms"]["sentence"]["p95_ms"],
        "token_p95_ms": expl["sla_ms"]["token"]["p95_ms"],
        "expired_failed_rate": expl["expired_failed_rate"],
    }
    # goodput by hif.harness.goodput's definition applied to the records (never the runner's
    # figure: a summary edited or from another run cannot pass a floor the records do not)
    for n in ("goodput_rps", "goodput_share"):
        values[n] = gates.REGISTRY[n].read(head)
    # the stream gates, from the records' histograms (ITL: from the interval log, when it has any)
    stream = chat.get("stream") or {}
    from_records = ("ttft_", "intended_ttft_", "tpot_") if stream else ()
    from_hlog = ("itl_",) if "itl_ms" in stream else ()
    for n, gate in gates.REGISTRY.items():
        if n.startswith((*from_records, *from_hlog)):
            values[n] = gate.read(head)
    for n in targets:
        values.setdefault(n, runner_values.get(n))

    def judge(items: Mapping[str, float]) -> list[dict[str, Any]]:
        return [
            {
                "name": n,
                "threshold": t,
                "value": values[n],
                "pass": gates.REGISTRY[n].passes(values[n], t),
                "op": gates.REGISTRY[n].op,
            }
            for n, t in items.items()
        ]

    table = judge(targets)
    return {
        "source": "summary.json" if targets else "not gated",
        "gated": bool(table),
        "gates": table,
        "pass": gates.verdict(table),
        "reference": judge(DEFAULT_SLOS),
    }
