"""What a run counted: counters and histograms, overall and per time bucket, mergeable exactly.

Tags of the histograms (also the tags of ``histograms.hlog``):

- ``chat.service``: actual send -> full answer (what the server cost)
- ``chat.intended``: intended start -> full answer (coordinated-omission free)
- ``sla.sentence`` / ``sla.token``: chat answer -> first poll seeing ``complete``
- ``sla.bound``: width of that measurement (last pending poll -> terminal poll)
- ``poll``: one trace-status or graph request
- ``gen.loop_lag``: how late the generator's own event loop woke up
- ``gen.send_lag``: actual send - max(intended start, worker free): the generator's own delay

Counter keys: ``requests``, ``ok``, ``good`` (toward goodput), ``late``, ``attached``, ``traces``, ``polls``,
``poll_errors``, ``status:<code>``, ``class:<error_class>``, ``state:<terminal state>``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

from hif.harness.load.stream import ITL, TPOT, TTFT
from hif.harness.stats import Interval, LatencyHistogram

CHAT_SERVICE, CHAT_INTENDED = "chat.service", "chat.intended"
SLA_SENTENCE, SLA_TOKEN, SLA_BOUND = "sla.sentence", "sla.token", "sla.bound"
POLL, LOOP_LAG, SEND_LAG = "poll", "gen.loop_lag", "gen.send_lag"


class Bucket:
    """Counters and histograms of one time bucket ``[start_s, end_s)``."""

    def __init__(self, start_s: float, end_s: float, phase: str = "load") -> None:
        self.start_s, self.end_s = start_s, end_s
        self.phase = phase  # "drain": after load stopped, only polls finishing
        self.counts: collections.Counter[str] = collections.Counter()
        self.hists: dict[str, LatencyHistogram] = {}

    def add_intervals(self, intervals: Iterable[Interval]) -> None:
        for iv in intervals:
            self.hists.setdefault(iv.tag, LatencyHistogram()).merge(iv.histogram)

    def merge(self, other: Bucket) -> None:
        self.counts.update(other.counts)
        for tag, h in other.hists.items():
            self.hists.setdefault(tag, LatencyHistogram()).merge(h)

    def hist(self, tag: str) -> LatencyHistogram:
        return self.hists.get(tag) or LatencyHistogram()

    def to_json(self) -> dict[str, Any]:
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "phase": self.phase,
            "counts": dict(self.counts),
            "hists": {t: h.encode() for t, h in self.hists.items() if h.count},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Bucket:
        b = cls(float(data["start_s"]), float(data["end_s"]), str(data.get("phase", "load")))
        b.counts.update(data.get("counts", {}))
        b.hists = {t: LatencyHistogram.decode(s) for t, s in data.get("hists", {}).items()}
        return b

    def view(self) -> dict[str, Any]:
        """The bucket as summary.json and ``on_tick`` show it."""
        width = max(self.end_s - self.start_s, 1e-9)
        c = self.counts
        requests = c["requests"]
        service, intended = self.hist(CHAT_SERVICE), self.hist(CHAT_INTENDED)
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "phase": self.phase,
            "requests": requests,
            "rps": round(requests / width, 2),
            "ok": c["ok"],
            "http_4xx": _sum_status(c, 4),
            "http_5xx": _sum_status(c, 5),
            "errors": requests - c["ok"],
            "error_rate": _rate(requests - c["ok"], requests),
            # goodput (hif.harness.goodput): an attached chat counts where its explanation ended
            "goodput": c["good"],
            "goodput_rps": round(c["good"] / width, 2),
            "p50_ms": _pct(service, 50),
            "p95_ms": _pct(service, 95),
            "p99_ms": _pct(service, 99),
            "intended_p95_ms": _pct(intended, 95),
            "intended_p99_ms": _pct(intended, 99),
            "sentence_p95_ms": _pct(self.hist(SLA_SENTENCE), 95),
            "token_p95_ms": _pct(self.hist(SLA_TOKEN), 95),
            "traces": c["traces"],
            "complete": c["state:complete"],
            "expired": c["state:expired"],
            "failed": c["state:failed"],
            "orphaned": c["state:orphaned"],
            "shed": c["state:shed"],
            "rate_limited": c["state:rate_limited"],
            "polls": c["polls"],
            "loop_lag_p99_ms": _pct(self.hist(LOOP_LAG), 99),
            **self._stream_view(),
        }

    def _stream_view(self) -> dict[str, float]:
        """Streamed runs' figures over time (absent from a bucket without streams)."""
        out = {}
        for key, tag, p in (
            ("ttft_p95_ms", TTFT, 95),
            ("itl_p95_ms", ITL, 95),
            ("itl_p99_ms", ITL, 99),
            ("tpot_p95_ms", TPOT, 95),
        ):
            h = self.hists.get(tag)
            if h is not None and h.count:
                out[key] = round(h.percentile(p), 3)
        return out


def _pct(h: LatencyHistogram, p: float) -> float | None:
    """A bucket's percentile, None when it holds no values (a 0.0 would read as fast)."""
    return round(h.percentile(p), 3) if h.count else None


class Tally:
    """The whole run: totals plus buckets keyed by index from ``t0_s``."""

    def __init__(self, t0_s: float, bucket_s: float) -> None:
        self.t0_s, self.bucket_s = t0_s, bucket_s
        self.counts: collections.Counter[str] = collections.Counter()
        self.hists: dict[str, LatencyHistogram] = {}
        self.buckets: dict[int, Bucket] = {}

    def bucket(self, now_s: float) -> Bucket:
        i = int((now_s - self.t0_s) // self.bucket_s)
        b = self.buckets.get(i)
        if b is None:
            start = self.t0_s + i * self.bucket_s
            b = self.buckets[i] = Bucket(start, start + self.bucket_s)
        return b

    def close_bucket(self, bucket: Bucket, intervals: list[Interval]) -> None:
        bucket.add_intervals(intervals)
        self.counts.update(bucket.counts)
        for iv in intervals:
            self.hists.setdefault(iv.tag, LatencyHistogram()).merge(iv.histogram)

    def hist(self, tag: str) -> LatencyHistogram:
        return self.hists.get(tag) or LatencyHistogram()

    def merge(self, other: Tally) -> None:
        self.counts.update(other.counts)
        for tag, h in other.hists.items():
            self.hists.setdefault(tag, LatencyHistogram()).merge(h)
        for _i, b in other.buckets.items():
            key = round((b.start_s - self.t0_s) / self.bucket_s)
            mine = self.buckets.setdefault(key, Bucket(b.start_s, b.end_s, b.phase))
            if b.phase == "load":
                mine.phase = "load"
            mine.merge(b)

    def to_json(self) -> dict[str, Any]:
        return {
            "t0_s": self.t0_s,
            "bucket_s": self.bucket_s,
            "counts": dict(self.counts),
            "hists": {t: h.encode() for t, h in self.hists.items() if h.count},
            "buckets": [b.to_json() for _, b in sorted(self.buckets.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tally:
        t = cls(float(data["t0_s"]), float(data["bucket_s"]))
        t.counts.update(data.get("counts", {}))
        t.hists = {tag: LatencyHistogram.decode(s) for tag, s in data.get("hists", {}).items()}
        for bd in data.get("buckets", []):
            b = Bucket.from_json(bd)
            t.buckets[round((b.start_s - t.t0_s) / t.bucket_s)] = b
        return t


def _sum_status(counts: Mapping[str, int], hundreds: int) -> int:
    prefix = f"status:{hundreds}"
    return sum(v for k, v in counts.items() if k.startswith(prefix) and len(k) == len(prefix) + 2)


def _rate(n: int, d: int) -> float:
    return round(n / d, 6) if d else 0.0
