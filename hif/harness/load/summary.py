"""summary.json from a :class:`~hif.harness.load.tally.Tally`: rates, percentiles, SLO gates, validity."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from hif.harness import gates, goodput
from hif.harness.load.settings import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SLO_FAILED,
    RUNBOOK_SLOS,
    LoadSettings,
    Share,
    local_share,
)
from hif.harness.load.stream import ITL, TPOT, TTFB, TTFO, TTFO_INTENDED, TTFT, TTFT_INTENDED
from hif.harness.load.tally import (
    CHAT_INTENDED,
    CHAT_SERVICE,
    LOOP_LAG,
    POLL,
    SEND_LAG,
    SLA_BOUND,
    SLA_SENTENCE,
    SLA_TOKEN,
    Tally,
    _rate,
    _sum_status,
)
from hif.harness.records import EXPLANATION_STATES, SUMMARY_SCHEMA

# The generator was the bottleneck when its own loop woke this late (p99) ...
MAX_LOOP_LAG_P99_MS = 100.0
# ... or it achieved under this share of the asked rate while sends were on time, ...
MIN_ACHIEVED_SHARE = 0.8
MAX_LATE_SHARE = 0.1
# ... or a free worker sent this much later than its slot (p99).
MAX_SEND_LAG_P99_MS = 50.0


@dataclasses.dataclass(frozen=True)
class LoadSummary:
    """The result of one run: ``data`` is exactly what summary.json holds."""

    data: Mapping[str, Any]

    @property
    def exit_code(self) -> int:
        return int(self.data["exit_code"])

    @property
    def valid(self) -> bool:
        return bool(self.data["generator"]["valid"])

    @property
    def slo_passed(self) -> bool | None:
        """None when the run was not gated (no ``--slo``)."""
        verdict = self.data["slo"]["pass"]
        return None if verdict is None else bool(verdict)

    @property
    def buckets(self) -> list[dict[str, Any]]:
        return list(self.data["buckets"])


NO_SCRAPES: dict[str, Any] = {"urls": {}, "file": None, "every_s": 0.0, "scrapes": 0, "errors": {}}

# Called with each finished time bucket (the same dict as ``summary["buckets"][i]``).
TickCallback = Callable[[dict[str, Any]], None]


def build_summary(
    tally: Tally, settings: LoadSettings, *, started_s: float, ended_s: float, meta: dict[str, Any]
) -> dict[str, Any]:
    # Rates count over the load window; polls may run on after it (the drain) until ended_s.
    load_ended_s = min(float(meta.get("load_ended_s") or ended_s), ended_s)
    duration_s = max(load_ended_s - started_s, 1e-9)
    chat = _chat(tally, duration_s)
    chat.update(_goodput(tally, settings, duration_s))
    if settings.stream:
        chat["stream"] = _stream(tally, duration_s)
    expl = _explanations(tally, settings)
    gen = _generator(tally, settings, chat, duration_s, meta.get("share") or local_share(settings))
    slo = gates.evaluate(settings.slos, {"chat": chat, "explanations": expl}, RUNBOOK_SLOS)
    exit_code = EXIT_INVALID if not gen["valid"] else (EXIT_SLO_FAILED if slo["pass"] is False else EXIT_OK)
    return {
        "v": SUMMARY_SCHEMA,
        "run_id": meta.get("run_id"),
        "shard": settings.shard,
        "started_at": round(started_s, 3),
        "ended_at": round(ended_s, 3),
        "duration_s": round(duration_s, 3),
        "load_ended_at": round(load_ended_s, 3),
        "drain_s": round(ended_s - load_ended_s, 3),
        "stopped_by": meta.get("stopped_by", "duration"),
        "mode": "open" if settings.open_loop else "closed",
        "settings": settings.public(),
        "chat": chat,
        "explanations": expl,
        "generator": gen,
        "slo": slo,
        "histograms": {t: h.encode() for t, h in sorted(tally.hists.items()) if h.count},
        "buckets": [b.view() for _, b in sorted(tally.buckets.items())],
        "exit_code": exit_code,
        "featureset": meta.get("featureset"),
        "metrics": meta.get("metrics") or NO_SCRAPES,
    }


def percentiles(h: Any) -> dict[str, Any]:
    """A histogram's summary; every figure null when it holds no values (a 0.0 would read as fast)."""
    out = h.summary()
    if not out["count"]:
        out = {k: (v if k == "count" else None) for k, v in out.items()}
    return out


def _chat(t: Tally, duration_s: float) -> dict[str, Any]:
    c = t.counts
    n = c["requests"]
    errors = n - c["ok"]
    by_status = {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("status:")}
    by_class = {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("class:")}
    return {
        "requests": n,
        "ok": c["ok"],
        "errors": errors,
        "rps": round(n / duration_s, 2),
        "success_rate": _rate(c["ok"], n),
        "error_rate": _rate(errors, n),
        "http_4xx_rate": _rate(_sum_status(c, 4), n),
        "http_5xx_rate": _rate(_sum_status(c, 5), n),
        "by_status": by_status,
        "by_error_class": by_class,
        "late": c["late"],
        "dropped": c["class:dropped"],
        "latency_ms": percentiles(t.hist(CHAT_SERVICE)),
        "intended_latency_ms": percentiles(t.hist(CHAT_INTENDED)),
    }


def _goodput(t: Tally, s: LoadSettings, duration_s: float) -> dict[str, Any]:
    """``goodput`` (count), ``goodput_rps`` over the load window, ``goodput_share`` of all chats, and
    the targets they were judged against (v4; see hif.harness.goodput)."""
    out = goodput.rates(t.counts["good"], t.counts["requests"], duration_s)
    out["goodput_rps"] = round(out["goodput_rps"], 2)
    if out["goodput_share"] is not None:
        out["goodput_share"] = round(out["goodput_share"], 6)
    out["goodput_targets"] = goodput.GoodputTargets.from_slos(s.slos).to_json()
    return out


def _stream(t: Tally, duration_s: float) -> dict[str, Any]:
    c = t.counts
    itl = t.hist(ITL)
    compared = c["stream_usage_compared"]
    source = "local" if compared or itl.count else ("server" if t.hist(TPOT).count else "none")
    return {
        "streams": c["streams"],
        "ttfb_ms": t.hist(TTFB).summary(),
        "ttft_ms": t.hist(TTFT).summary(),
        "ttfo_ms": t.hist(TTFO).summary(),
        "intended_ttft_ms": t.hist(TTFT_INTENDED).summary(),
        "intended_ttfo_ms": t.hist(TTFO_INTENDED).summary(),
        "itl_ms": itl.summary(),
        "tpot_ms": t.hist(TPOT).summary(),
        "output_tokens": c["stream_output_tokens"],
        "output_tokens_per_s": round(c["stream_output_tokens"] / duration_s, 2),
        "token_source": source,
        "usage_compared": compared,
        "usage_mismatch_rate": (_rate(c["stream_usage_mismatch"], compared) if compared else None),
    }


def _explanations(t: Tally, s: LoadSettings) -> dict[str, Any]:
    c = t.counts
    traces = c["traces"]
    by_state = {st: c[f"state:{st}"] for st in EXPLANATION_STATES}
    polls = c["polls"]
    return {
        "attached": c["attached"],
        "traces": traces,
        "by_state": by_state,
        **{f"{st}_rate": _rate(n, traces) for st, n in by_state.items()},
        "expired_failed_rate": _rate(by_state["expired"] + by_state["failed"], traces),
        "sla_ms": {"sentence": percentiles(t.hist(SLA_SENTENCE)), "token": percentiles(t.hist(SLA_TOKEN))},
        "sla_bound_ms": percentiles(t.hist(SLA_BOUND)),
        "polling": {
            "requests": polls,
            "errors": c["poll_errors"],
            "latency_ms": percentiles(t.hist(POLL)),
            "initial_ms": s.poll_initial_ms,
            "max_ms": s.poll_max_ms,
            "deadline_s": s.poll_deadline_seconds,
        },
    }


def short_of_rate(target_rps: float, requests: int, duration_s: float, *, poisson: bool) -> bool:
    """Fewer requests than the asked rate allows: under 80% of the expected count, or, for Poisson
    arrivals, also more than 3 standard deviations under it (at a few requests per second a
    Poisson schedule offers 20% fewer than asked by chance: 46 of 60 is 1.8 sd)."""
    expected = target_rps * duration_s
    floor = MIN_ACHIEVED_SHARE * expected
    if poisson:
        floor = min(floor, expected - 3.0 * math.sqrt(expected))
    return requests < floor


def _generator(
    t: Tally, s: LoadSettings, chat: dict[str, Any], duration_s: float, share: Share
) -> dict[str, Any]:
    """Was the generator, not the server, the bottleneck? Then the run measured the generator."""
    loop_lag, send_lag = t.hist(LOOP_LAG), t.hist(SEND_LAG)
    reasons: list[str] = []
    if loop_lag.percentile(99) > MAX_LOOP_LAG_P99_MS:
        reasons.append(f"event-loop lag p99 {loop_lag.percentile(99):.0f} ms > {MAX_LOOP_LAG_P99_MS:.0f} ms")
    if send_lag.percentile(99) > MAX_SEND_LAG_P99_MS:
        reasons.append(
            f"send lag p99 {send_lag.percentile(99):.0f} ms > {MAX_SEND_LAG_P99_MS:.0f} ms: free workers "
            "sent late"
        )
    target, achieved, n = share.target_rps, chat["rps"], chat["requests"]
    poisson = s.arrival == "poisson" and bool(s.arrival_rate)
    # Far below the asked rate although requests left on time: the schedule itself was not kept.
    # (Late sends mean workers were all waiting on the server: that is the server's doing.)
    if (
        target
        and n
        and short_of_rate(target, n, duration_s, poisson=poisson)
        and chat["late"] < MAX_LATE_SHARE * n
    ):
        reasons.append(
            f"achieved {achieved:.0f} req/s < {MIN_ACHIEVED_SHARE:.0%} of the asked {target:.0f} "
            "with the server keeping up"
        )
    return {
        "valid": not reasons,
        "reasons": reasons,
        "target_rps": target,
        "achieved_rps": achieved,
        "workers": share.workers,
        "loop_lag_ms": percentiles(loop_lag),
        "send_lag_ms": percentiles(send_lag),
    }
