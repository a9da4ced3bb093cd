"""The compared metrics of one source, each as blocks a bootstrap can resample.

Latencies come from the HDR interval log (``histograms.hlog``): one block per time interval, the
intervals of several shards that cover the same time merged into one block (they saw the same
server state). Shares come from summary.json's per-bucket counts; goodput from the JSONL records,
binned by intended start into the same blocks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from hif.harness import goodput, records
from hif.harness.compare.bootstrap import Blocks, Ratios
from hif.harness.compare.inputs import Source
from hif.harness.load import stream
from hif.harness.stats import read_intervals

BLOCK_S = 1.0  # the runner's default bucket: one block per interval line

# metric -> (hlog tag, percentile); the TTFT/ITL tags exist once a run streams
LATENCY_TAGS = {
    "chat": "chat.service",
    "chat_intended": "chat.intended",
    "sentence": "sla.sentence",
    "token": "sla.token",
    "ttft": stream.TTFT,
    "itl": stream.ITL,
    "tpot": stream.TPOT,
}
PERCENTILES = (50.0, 95.0, 99.0)
# metric -> (numerator bucket keys, denominator bucket key)
SHARES = {
    "error_rate": (("errors",), "requests"),
    "expired_failed_rate": (("expired", "failed"), "traces"),
    "expired_rate": (("expired",), "traces"),
    "failed_rate": (("failed",), "traces"),
    "shed_rate": (("shed",), "traces"),
}
LOWER_IS_WORSE = frozenset({"goodput_rps", "goodput_share"})


@dataclasses.dataclass(frozen=True)
class Measure:
    name: str
    latency: tuple[Blocks, float] | None = None  # blocks and percentile
    ratio: Ratios | None = None

    @property
    def samples(self) -> float:
        if self.latency is not None:
            return self.latency[0].total
        return self.ratio.total if self.ratio is not None else 0

    def value(self) -> float | None:
        if self.latency is not None:
            return self.latency[0].percentile(self.latency[1])
        return self.ratio.value() if self.ratio is not None else None

    def draws(self, rng: np.random.Generator, draws: int) -> Any:
        if self.latency is not None:
            return self.latency[0].percentile_draws(self.latency[1], rng, draws)
        assert self.ratio is not None
        return self.ratio.draws(rng, draws)


def metric_names() -> list[str]:
    """Every metric a comparison may show (and ``--fail-on`` may name)."""
    names = [f"{m}_p{p:g}_ms" for m in LATENCY_TAGS for p in PERCENTILES]
    return names + list(SHARES) + ["goodput_rps", "goodput_share"]


def measures(source: Source, targets: goodput.GoodputTargets) -> dict[str, Measure]:
    """Every metric the source has data for (a run without token traces has no token_p95_ms)."""
    out: dict[str, Measure] = {}
    for prefix, blocks in _latency_blocks(source.hlogs).items():
        for p in PERCENTILES:
            out[f"{prefix}_p{p:g}_ms"] = Measure(f"{prefix}_p{p:g}_ms", latency=(blocks, p))
    buckets = _merged_buckets(source.buckets)
    for name, (nums, den) in SHARES.items():
        ratio = Ratios.of(
            [sum(float(b.get(k) or 0) for k in nums) for b in buckets],
            [float(b.get(den) or 0) for b in buckets],
        )
        if ratio.total:
            out[name] = Measure(name, ratio=ratio)
    out.update(_goodput(source, targets))
    return out


def _latency_blocks(paths: list[Path]) -> dict[str, Blocks]:
    tags = {tag: prefix for prefix, tag in LATENCY_TAGS.items()}
    rows: dict[str, dict[int, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    values: dict[int, float] = {}
    for path in paths:
        for iv in read_intervals(path):
            prefix = tags.get(iv.tag)
            if prefix is None:
                continue
            h = iv.histogram.hdr
            row = rows[prefix][math.floor(iv.start_s / BLOCK_S)]
            counts = np.frombuffer(h.counts, dtype=np.int64 if h.word_size == 8 else np.int32)
            for i in np.flatnonzero(counts).tolist():
                row[i] = row.get(i, 0) + int(counts[i])
                if i not in values:
                    values[i] = h.get_highest_equivalent_value(h.get_value_from_index(i)) / 1000.0
    return {p: Blocks.from_rows([r[k] for k in sorted(r)], values) for p, r in rows.items()}


def _merged_buckets(buckets: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Shards' buckets covering the same second added into one."""
    out: dict[int, dict[str, float]] = {}
    for b in buckets:
        key = math.floor(float(b.get("start_s") or 0.0) / BLOCK_S)
        acc = out.setdefault(key, {})
        for k, v in b.items():
            if (
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and not k.endswith(("_ms", "_s", "rate"))
            ):
                acc[k] = acc.get(k, 0.0) + float(v)
    return [out[k] for k in sorted(out)]


def _goodput(source: Source, targets: goodput.GoodputTargets) -> dict[str, Measure]:
    good_traces: set[str] = set()
    for path in source.files(records.EXPLANATION_FILE):
        for r in _lines(path):
            if r.get("trace_id") and goodput.explanation_good(
                state=r.get("state", ""),
                granularity=r.get("granularity"),
                sla_ms=r.get("sla_ms"),
                targets=targets,
            ):
                good_traces.add(r["trace_id"])
    chats: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for path in source.files(records.CHAT_FILE):
        for r in _lines(path):
            ts = r.get("intended_ts") or r.get("ts")
            if ts is None:
                continue
            block = chats[math.floor(float(ts) / BLOCK_S)]
            block[1] += 1
            ok = goodput.chat_good(
                status=int(r.get("status") or 0),
                error_class=r.get("error_class"),
                latency_ms=r.get("latency_ms"),
                targets=targets,
            )
            block[0] += ok and (not r.get("attached") or r.get("trace_id") in good_traces)
    if not chats:
        return {}
    keys = sorted(chats)
    good = [chats[k][0] for k in keys]
    return {
        "goodput_rps": Measure("goodput_rps", ratio=Ratios.of(good, [BLOCK_S] * len(keys))),
        "goodput_share": Measure("goodput_share", ratio=Ratios.of(good, [chats[k][1] for k in keys])),
    }


def _lines(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, "rb") as fh:
        for raw in fh:
            with contextlib.suppress(orjson.JSONDecodeError):
                r = orjson.loads(raw)
                if isinstance(r, dict):
                    yield r
