"""report.md, rendered from report.json's data (never from live state)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from hif.harness import gates
from hif.harness.report import capacity as capacity_view
from hif.harness.report import compare as compare_view
from hif.harness.report.saturation import first_lines


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def _signed(v: Any, fmt: str = "ms") -> str:
    if v is None:
        return "-"
    return f"{v:+,.1f}" if fmt == "ms" else f"{100 * v:+.2f} pt"


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _inputs(d: Mapping[str, Any]) -> list[str]:
    i, run = d["inputs"], d["run"]
    corrupt = i["corrupt_lines"]
    lines = [
        "# Load report",
        "",
        f"Results: {', '.join(f'`{p}`' for p in i['results_dirs'])}; run {_when(run['start_ts'])} for "
        f"{run['duration_s']:.1f} s; {i['lines']['chat']:,} chat and {i['lines']['explanation']:,} "
        f"explanation records ({i['scan_seconds']:.1f} s to scan).",
        "",
        *headline_lines(d),
    ]
    if corrupt["chat"] or corrupt["explanation"]:
        lines += [f"**Corrupt lines skipped:** {corrupt['chat']} chat, {corrupt['explanation']} explanation."]
        lines += [f"- `{e['file']}` at byte {e['byte_offset']}: {e['reason']}" for e in i["corrupt_examples"]]
        lines.append("")
    for warning in i.get("warnings") or []:
        lines += [f"**Warning:** {warning}.", ""]
    for g in d.get("generator") or []:
        if not g.get("valid", True):
            lines += [
                f"**Run marked invalid by the generator self-check:** {'; '.join(g.get('reasons', []))}",
                "",
            ]
    return lines


def headline_lines(d: Mapping[str, Any]) -> list[str]:
    """Saturation and goodput, first: they decide how every later figure reads."""
    out = [*first_lines(d.get("saturation"), d["run"]["start_ts"])]
    g = d.get("goodput")
    if g:
        t = g["targets"]
        where = "the run's gates" if t["source"] == "gates" else "reference targets, not gated"
        out.append(
            f"**Goodput** {_num(g['goodput_rps'])} chats/s, "
            f"{_pct(g['goodput_share'])} of {g['chats']:,} chats "
            f"(succeeded within {t['chat_ms']:g} ms and, when explained, explanation complete within "
            f"{t['sentence_ms']:g} ms sentence / {t['token_ms']:g} ms token; {where})."
        )
    return [line for x in out for line in (x, "")]


def _gate_figure(name: str, v: Any) -> str:
    """A gate's value in its registry unit: ratios as %, rates with theirs, latencies in ms."""
    gate = gates.REGISTRY.get(name)
    unit = gate.unit if gate is not None else ("ratio" if "rate" in name else "ms")
    if unit == "ratio":
        return _pct(v)
    if unit == "ms":
        return _ms(v)
    return "-" if v is None else f"{v:,.2f} {unit}"


def _gate_rows(gates_: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for g in gates_:
        limit = _gate_figure(g["name"], g["threshold"])
        if g.get("op") == ">=":  # a floor: the value must reach the target
            limit = f">= {limit}"
        verdict = {True: "pass", False: "**FAIL**", None: "no data"}[g["pass"]]
        rows.append((g["name"], limit, _gate_figure(g["name"], g["value"]), verdict))
    return rows


def _slo(d: Mapping[str, Any]) -> list[str]:
    slo = d["slo"]
    if slo.get("pass") is None and not slo["gates"]:
        rows = [(*r[:3], f"({r[3]}, not gated)") for r in _gate_rows(slo.get("reference") or [])]
        return [
            "## SLOs",
            "",
            "Verdict: **not gated**: no `--slo` was given, so no gate decided the runner's exit code "
            "and summary.json's `slo.pass` is null.",
            "",
            "For reference only, the runbook's example targets against this run; they decide nothing:",
            "",
            *table(("reference target", "target", "measured", "would be"), rows),
        ]
    verdict = "all gates pass" if slo["pass"] else "**a gate failed**"
    return [
        "## SLOs",
        "",
        f"Gates from {slo['source']}; verdict: {verdict}.",
        "",
        *table(("gate", "target", "measured", "result"), _gate_rows(slo["gates"])),
    ]


def _chat(d: Mapping[str, Any]) -> list[str]:
    c = d["chat"]
    s, i = c["latency_ms"], c["intended_latency_ms"]
    out = [
        "## Chat lane",
        "",
        f"{c['requests']:,} requests, {_num(c['rps'])} req/s; {_pct(c['error_rate'])} errors "
        f"(4xx {_pct(c['rate_4xx'])}, 5xx {_pct(c['rate_5xx'])}); "
        f"late {c['late']:,}, dropped {c['dropped']:,}.",
        "",
        "Latency of every answered request (errors included, as in summary.json), ms. *Service* runs from "
        "the actual send; *intended start* "
        "from the token-bucket grant or schedule slot, so it includes queueing in the generator "
        "(coordinated-omission free).",
        "",
    ]
    out += table(
        ("view", "count", "p50", "p95", "p99", "max"),
        [
            (n, f"{h['count']:,}", _ms(h["p50_ms"]), _ms(h["p95_ms"]), _ms(h["p99_ms"]), _ms(h["max_ms"]))
            for n, h in (("service", s), ("intended start", i))
        ],
    )
    if c["error_classes"]:
        out += table(("error class", "requests"), sorted(c["error_classes"].items()))
    return out


STREAM_VIEWS = (
    ("TTFT", "ttft_ms"),
    ("TTFT, intended start", "intended_ttft_ms"),
    ("TPOT", "tpot_ms"),
    ("ITL, per token", "itl_ms"),
)


def _streaming(d: Mapping[str, Any]) -> list[str]:
    """Streamed chats (``--stream``): TTFT, TPOT and (with a local tokenizer) ITL for the run and
    per chaos window; a run that did not stream (or a report older than v4) has no such section."""
    st = d["chat"].get("stream")
    if not st:
        return []
    out = [
        "## Streaming",
        "",
        f"{st['streams']:,} streamed chats. TTFT: send -> first content token; TPOT: (last - first "
        "content event) / (output tokens - 1), per request; the chat lane's latency above is "
        "end-to-end, to the last content event (docs/load.md defines each). ITL, per token, comes "
        "from histograms.hlog (chat records do not carry it); per chaos window, each of its intervals "
        "counts in the part that holds the interval's midpoint.",
        "",
    ]
    out += table(
        ("view", "count", "p50", "p95", "p99", "max"),
        [
            (n, f"{h['count']:,}", _ms(h["p50_ms"]), _ms(h["p95_ms"]), _ms(h["p99_ms"]), _ms(h["max_ms"]))
            for n, k in STREAM_VIEWS
            if (h := st.get(k))
        ],
    )
    keys = [
        "ttft_p95_ms",
        "ttft_p99_ms",
        "tpot_p95_ms",
        *(("itl_p95_ms", "itl_p99_ms") if "itl_ms" in st else ()),
    ]
    rows = [(w["flag"], *(_three(w, "chat", k, _ms) for k in keys)) for w in d["chaos"]["windows"]]
    if rows:
        out += ["Per chaos window, pre / during / post (ms):", ""]
        heads = [f"{k.split('_')[0].upper()} {k.split('_')[1]}" for k in keys]  # "TTFT p95"
        out += table(("chaos window", *heads), rows)
    return out


def _explanations(d: Mapping[str, Any]) -> list[str]:
    e = d["explanations"]
    out = [
        "## Explanation SLA",
        "",
        f"{e['traces']:,} traces: expired {_pct(e['expired_rate'])}, failed {_pct(e['failed_rate'])}, "
        f"orphaned {_pct(e['orphaned_rate'])}, shed {_pct(e['shed_rate'])} "
        f"(expired+failed {_pct(e['expired_failed_rate'])}); {e['polls']:,} status polls.",
        "",
        "SLA = chat answer -> first poll that saw the terminal state, complete traces only, ms.",
        "",
    ]
    rows = [
        (g, f"{h['count']:,}", _ms(h["p50_ms"]), _ms(h["p95_ms"]), _ms(h["p99_ms"]), _ms(h["max_ms"]))
        for g, h in e["sla_ms"].items()
    ]
    out += table(("granularity", "complete", "p50", "p95", "p99", "max"), rows)
    bounds = e.get("sla_bound_ms") or {}
    if bounds:
        out += [
            "Polling bound (how late the terminal state may have been seen): "
            + ", ".join(f"{g} p95 {_ms(h['p95_ms'])} ms" for g, h in bounds.items()),
            "",
        ]
    if e["states"]:
        out += table(("state", "traces"), sorted(e["states"].items()))
    return out


def _counts(values: Mapping[str, float] | None) -> str:
    if values is None:
        return "-"
    return ", ".join(f"{k or '-'} {_num(v)}" for k, v in sorted(values.items()) if v) or "none"


def _run_deltas(run: Mapping[str, Any]) -> list[str]:
    if not run.get("ok"):
        return [f"This run's server counters: not seen ({run.get('why')}).", ""]
    span = run["to"] - run["from"]
    out = [
        f"This run's server counters (increase between scrapes at {_when(run['from'])} and "
        f"{_when(run['to'])}, {span:,.0f} s; a counter reset counts from zero, as Prometheus' increase()):",
        "",
    ]
    rows = [
        ("backpressure actions by level", _counts(run.get("backpressure_by_level"))),
        ("backpressure actions by level/action", _counts(run.get("backpressure_actions"))),
        ("explainer jobs by outcome", _counts(run.get("jobs"))),
        ("gateway explanation admissions", _counts(run.get("admissions"))),
    ]
    return out + table(("during this run", "count"), rows)


def _window_deltas(d: Mapping[str, Any]) -> list[str]:
    windows = d["chaos"]["windows"]
    if not windows:
        return []
    rows = []
    for w in windows:
        m = w.get("metrics") or {}
        if not m.get("ok"):
            rows.append((w["flag"], f"not seen ({m.get('why', 'no scrapes')})", "", "", ""))
            continue
        rows.append(
            (
                w["flag"],
                _counts(m.get("backpressure_by_level")),
                _counts(m.get("jobs")),
                _counts(m.get("admissions")),
                f"{m['to'] - m['from']:,.0f} s",
            )
        )
    head = ("chaos window", "backpressure by level", "job outcomes", "admissions", "scrapes span")
    title = "Server counters during each chaos window (deltas; edges at the nearest 5 s scrape):"
    return [title, "", *table(head, rows)]


def _backpressure(d: Mapping[str, Any]) -> list[str]:
    m = d["metrics"]
    out = ["## Backpressure", ""]
    out += _run_deltas(m.get("run") or {"ok": False, "why": "this report.json predates per-run deltas"})
    out += _window_deltas(d)
    ex, gw = m["explainer"], m["gateway"]
    if ex["ok"]:
        lc = ex["level_counts"]
        out += [
            f"Explainer (`{ex['url']}`), **now** (read when this report was made; lifetime totals, "
            f"not this run's): level {_num(ex['backpressure_level'])}; actions at soft "
            f"{_num(lc['soft'])}, at hard {_num(lc['hard'])}.",
            "",
        ]
        if ex["backpressure_actions"]:
            out += table(
                ("action", "level", "count now"),
                [(a["action"], a["level"], _num(a["count"])) for a in ex["backpressure_actions"]],
            )
        if ex["jobs"]:
            out += table(("job state", "count now"), [(k, _num(v)) for k, v in sorted(ex["jobs"].items())])
    else:
        out += [
            f"Explainer metrics now: not read ({ex['error']}{', ' + ex['url'] if ex['url'] else ''}).",
            "",
        ]
    if gw["ok"]:
        out += [f"Gateway (`{gw['url']}`), **now**: level seen {_num(gw['backpressure_level'])}.", ""]
        if gw["admissions"]:
            out += table(
                ("admission outcome", "count now"),
                [(k, _num(v)) for k, v in sorted(gw["admissions"].items())],
            )
    else:
        out += [f"Gateway metrics now: not read ({gw['error']}{', ' + gw['url'] if gw['url'] else ''}).", ""]
    adm = d["chat"]["admissions"]
    if adm:
        out += ["Explanation state in this run's chat answers (from the records):", ""]
        out += table(("state", "chats"), sorted(adm.items()))
    return out


def _chaos(d: Mapping[str, Any]) -> list[str]:
    ch = d["chaos"]
    snap = ch["snapshot"]
    out = ["## Chaos", ""]
    if snap["error"]:
        out += [f"Control file `{snap['path']}`: {snap['error']}", ""]
    elif snap["flags"]:
        flags = "; ".join(f"{k} {_params(k, v)}" for k, v in snap["flags"].items())
        out += [f"Active now (`{snap['path']}`): {flags}.", ""]
    else:
        out += [f"No flag active now (`{snap['path']}`).", ""]
    if not ch["windows"]:
        return [*out, "No chaos window in this run.", ""]
    start = d["run"]["start_ts"]
    how = (
        "the event log (exact to the record)"
        if ch["source"] == "event_log"
        else "the records' chaos field (to the time bucket)"
    )
    out += [
        f"Windows from {how}. Pre and post are as long as the window, cut at the run's edges and at "
        "other windows. Chat p95 is the service time of answered requests.",
        "",
    ]
    rows: list[tuple[Any, ...]] = []
    for w in ch["windows"]:
        pre, dur, post = (w[k]["chat"] for k in ("pre", "during", "post"))
        rec = {True: _ms(w["recover_s"]), False: "not recovered", None: "-"}[w["recovered"]]
        rows.append(
            (
                f"{w['flag']} {_params(w['flag'], w['params'])}",
                f"+{w['start'] - start:.1f}",
                "-" if w["end"] is None else f"{w['end'] - w['start']:.1f}",
                f"{_ms(pre['p95_ms'])} / {_ms(dur['p95_ms'])} / {_ms(post['p95_ms'])}",
                f"{_signed(w['delta']['during']['chat_p95_ms'])} / "
                f"{_signed(w['delta']['post']['chat_p95_ms'])}",
                f"{_pct(pre['error_rate'])} / {_pct(dur['error_rate'])} / {_pct(post['error_rate'])}",
                f"{_num(pre['rps'])} / {_num(dur['rps'])} / {_num(post['rps'])}",
                rec,
            )
        )
    out += table(
        (
            "flag",
            "start s",
            "length s",
            "p95 ms pre/during/post",
            "p95 delta during/post",
            "errors pre/during/post",
            "req/s pre/during/post",
            "recover s",
        ),
        rows,
    )
    return out + _lane_table(ch["windows"], start)


def _three(w: Mapping[str, Any], lane: str, key: str, fmt: Any) -> str:
    return " / ".join(fmt(w[part][lane].get(key)) for part in ("pre", "during", "post"))


def _recover(r: Mapping[str, Any] | None) -> str:
    if not r:
        return "-"
    return {True: f"{_ms(r['s'])} s", False: "not recovered", None: "-"}[r["recovered"]]


def _lane_table(windows: Sequence[Mapping[str, Any]], start: float) -> list[str]:
    """The explanation lane in full, per window: every state's share, SLA p95 by granularity,
    goodput, and time to recover per lane (an explainer fault recovers when this lane does)."""
    out = [
        "Explanation lane and goodput, pre / during / post each window. Shares are of the traces "
        "offered in that part (by chat answer time); *masked*: the explainer was already saturated "
        "before the window, so this lane's deltas say little.",
        "",
    ]
    rows = []
    for w in windows:
        rec = w.get("recover") or {}
        rows.append(
            (
                f"{w['flag']} {_params(w['flag'], w['params'])}"
                + (" **masked**" if w.get("explanations_masked") else ""),
                f"+{w['start'] - start:.1f}",
                _three(w, "explanations", "complete_rate", _pct),
                _three(w, "explanations", "shed_rate", _pct),
                _three(w, "explanations", "expired_rate", _pct),
                _three(w, "explanations", "failed_rate", _pct),
                _three(w, "explanations", "sentence_p95_ms", _ms),
                _three(w, "explanations", "token_p95_ms", _ms),
                _three(w, "chat", "goodput_share", _pct),
                _recover(rec.get("chat")),
                _recover(rec.get("explanations")),
            )
        )
    return out + table(
        (
            "flag",
            "start s",
            "complete",
            "shed",
            "expired",
            "failed",
            "sentence p95 ms",
            "token p95 ms",
            "goodput share",
            "chat recovers",
            "explanations recover",
        ),
        rows,
    )


# the parameters that mean something for each flag (the file stores every field for every flag)
FLAG_PARAMS = {
    "slow-sae": ("percent", "jitter_ms"),
    "drop-s3": ("percent",),
    "fail-attribution": ("percent", "mode"),
    "rate-limit-spike": ("percent", "severity"),
}


def _params(flag: str, p: Mapping[str, Any]) -> str:
    names = FLAG_PARAMS.get(flag, tuple(k for k in p if k not in ("enabled_at", "expires_at")))
    keep = {k: p[k] for k in names if p.get(k) not in (None, "")}
    inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in keep.items())
    return f"({inner})" if inner else ""


def _soak(d: Mapping[str, Any], charts: Mapping[str, str]) -> list[str]:
    soak = d.get("soak")
    if not soak:
        return []
    out = [
        "## Soak",
        "",
        f"From `{soak['source']}` (status {soak['status']}); "
        f"{len(soak['segments'])} segments, {len(soak['breaching_segments'])} broke an SLO.",
        "",
    ]
    if "soak" in charts:
        out += [f"![soak series]({charts['soak']})", ""]
    rows = [
        (
            r["segment"],
            r["profile"] or "-",
            _num(r["attach_rate"]),
            r["granularity"] or "-",
            _ms(r["chat_p95_ms"]),
            _pct(r["error_rate"]),
            _ms(r["sentence_p95_ms"]),
            _ms(r["token_p95_ms"]),
            _pct(r["expired_failed_rate"]),
            ("**" + ", ".join(r["breaches"]) + "**") if r["breaches"] else "ok",
        )
        for r in soak["segments"]
    ]
    out += table(
        (
            "segment",
            "phase",
            "attach",
            "granularity",
            "chat p95",
            "errors",
            "sentence p95",
            "token p95",
            "expired+failed",
            "SLO",
        ),
        rows,
    )
    drift = soak["drift"]
    if drift["overall"]:
        out += [f"Drift / leak verdict: **{drift['overall']}**.", ""]
        out += [f"- {f}" for f in drift["findings"]] + ([""] if drift["findings"] else [])
        out += table(
            ("series", "verdict", "slope / h", "relative / h", "r2"),
            [
                (
                    k,
                    v["verdict"],
                    _num(v["slope_per_hour"]),
                    _pct(v["relative_slope_per_hour"]),
                    _num(v["r2"]),
                )
                for k, v in drift["series"].items()
            ],
        )
    return out


def render_markdown(d: Mapping[str, Any], charts: Mapping[str, str]) -> str:
    searched = capacity_view.markdown_lines(d, charts) + compare_view.markdown_lines(d)
    if not d["inputs"].get("files", [None]):  # a capacity or compare folder: no records, only its section
        return "\n".join(["# Report", "", *searched]).rstrip() + "\n"
    out = _inputs(d) + _slo(d) + _chat(d)
    if "latency" in charts:
        out += [f"![chat latency over time]({charts['latency']})", ""]
    out += _streaming(d)
    if "stream" in charts:
        out += [f"![TTFT, TPOT and ITL over time]({charts['stream']})", ""]
    out += _explanations(d)
    if "sla" in charts:
        out += [f"![explanation SLA over time]({charts['sla']})", ""]
    out += _backpressure(d)
    if "backpressure" in charts:
        out += [f"![backpressure and admissions]({charts['backpressure']})", ""]
    out += _chaos(d) + _soak(d, charts) + searched
    return "\n".join(out).rstrip() + "\n"
