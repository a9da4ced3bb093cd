"""The report from hand-made JSONL: exact percentiles, rates, chaos windows, merging, corrupt lines."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from hif.errors import HarnessError
from hif.harness.records import CHAOS_EVENTS_FILE, CHAT_FILE, EXPLANATION_FILE, SUMMARY_FILE
from hif.harness.report import run as report
from hif.harness.report.scan import CHAT, EXPLANATION, Plan, line_ranges
from hif.harness.stats import LatencyHistogram

T0 = 1_764_201_600.0


def chat(ts: float, latency_ms: float | None = 1.0, status: int = 200, **extra: Any) -> dict[str, Any]:
    error_class = extra.pop("error_class", None if 200 <= status < 300 else f"http_{status // 100}xx")
    rec = {
        "v": "hif.chat.v1",
        "ts": ts,
        "intended_ts": ts,
        "latency_ms": latency_ms,
        "intended_latency_ms": None if latency_ms is None else latency_ms + 0.5,
        "status": status,
        "error_class": error_class,
        "error": None,
        "tenant": "t",
        "attached": False,
        "granularity": None,
        "trace_id": None,
        "explanation_state": None,
        "chaos": [],
        "shard": "1/1",
        "late": False,
    }
    rec.update(extra)
    return rec


def expl(
    ts: float, sla_ms: float, state: str = "complete", granularity: str = "sentence", **extra: Any
) -> dict:
    rec = {
        "v": "hif.explanation.v1",
        "ts": ts,
        "trace_id": f"tr{ts}",
        "tenant": "t",
        "granularity": granularity,
        "state": state,
        "sla_ms": sla_ms,
        "sla_bound_ms": 10.0,
        "polls": 3,
        "chaos": [],
        "shard": "1/1",
    }
    rec.update(extra)
    return rec


def write(path: Path, records: Iterable[dict[str, Any] | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def build(*dirs: Path, tmp: Path | None = None, **kw: Any) -> dict[str, Any]:
    chaos_path = (tmp or dirs[0]) / "no-chaos.json"
    settings = report.ReportSettings(results_dirs=dirs, chaos_path=chaos_path, jobs=1, **kw)
    return report.build_report(dirs, settings)


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    """20 ok chats of 0.1..2.0 ms, 3 x 503 and 1 x 404 faster than those, 1 timeout without latency,
    over 24 s; 6 explanations."""
    d = tmp_path / "r"
    recs = [chat(T0 + i, (i + 1) / 10) for i in range(20)]
    recs += [
        chat(T0 + 20, 0.05, 503),
        chat(T0 + 21, 0.06, 503),
        chat(T0 + 22, 0.07, 503),
        chat(T0 + 23, 0.08, 404),
    ]
    recs.append(chat(T0 + 24, None, 0, error_class="timeout"))
    write(d / CHAT_FILE, recs)
    write(
        d / EXPLANATION_FILE,
        [
            expl(T0 + 1, 1.0),
            expl(T0 + 2, 2.0),
            expl(T0 + 3, 1.5, granularity="token"),
            expl(T0 + 4, 9.0, "expired"),
            expl(T0 + 5, 9.0, "failed"),
            expl(T0 + 6, 0.0, "orphaned"),
        ],
    )
    return d


def test_chat_headline_is_exact(basic: Path) -> None:
    c = build(basic)["chat"]
    assert (c["requests"], c["ok"], c["errors"]) == (25, 20, 5)
    assert c["error_rate"] == pytest.approx(5 / 25)
    assert (c["rate_4xx"], c["rate_5xx"]) == (pytest.approx(1 / 25), pytest.approx(3 / 25))
    assert c["error_classes"] == {"http_4xx": 1, "http_5xx": 3, "timeout": 1}
    # 24 answered (errors included): p50 is the 12th value, p95 the 23rd, p99 the 24th
    assert c["latency_ms"] == {"count": 24, "p50_ms": 0.8, "p95_ms": 1.9, "p99_ms": 2.0, "max_ms": 2.0}
    assert c["intended_latency_ms"]["p95_ms"] == 2.401  # above 2048 us HDR buckets are 2 us wide: top of 2400
    assert c["rps"] == pytest.approx(25 / 24)  # first to last send
    encoded = LatencyHistogram.decode(build(basic)["histograms"]["chat.service"])
    assert (encoded.count, encoded.percentile(95)) == (24, 1.9)


def test_explanation_headline_is_exact(basic: Path) -> None:
    e = build(basic)["explanations"]
    assert e["traces"] == 6
    assert e["states"] == {"complete": 3, "expired": 1, "failed": 1, "orphaned": 1}
    assert (e["expired_failed_rate"], e["orphaned_rate"]) == (pytest.approx(2 / 6), pytest.approx(1 / 6))
    assert e["sla_ms"]["sentence"] == {"count": 2, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 2.0, "max_ms": 2.0}
    assert e["sla_ms"]["token"]["p95_ms"] == 1.5
    assert e["polls"] == 18


def test_corrupt_lines_are_counted_and_skipped(basic: Path) -> None:
    write(
        basic / CHAT_FILE,
        [
            "{not json",
            '{"v": "hif.chat.v1", "ts": 17',
            "[1, 2]",
            '{"status": 200}',
            '{"ts": "soon", "status": 200}',
            '{"ts": 1.0, "status": null}',
            "",
            "   ",
        ],
    )
    data = build(basic)
    assert data["inputs"]["corrupt_lines"] == {"chat": 6, "explanation": 0}
    assert data["chat"]["requests"] == 25  # the good lines all still count
    ex = data["inputs"]["corrupt_examples"]
    assert len(ex) == 5 and ex[0]["file"].endswith(CHAT_FILE)
    with open(basic / CHAT_FILE, "rb") as fh:
        fh.seek(ex[0]["byte_offset"])
        assert fh.readline().startswith(b"{not json")


def test_slo_table_defaults_and_summary_gates(basic: Path) -> None:
    data = build(basic)
    # No gates given: not gated (null), and the runbook's targets are reference lines only.
    assert data["slo"]["source"] == "not gated" and data["slo"]["gates"] == []
    assert data["slo"]["pass"] is None and data["slo"]["gated"] is False
    ref = {g["name"]: g for g in data["slo"]["reference"]}
    assert ref["chat_p95_ms"]["threshold"] == 500.0 and ref["error_rate"]["pass"] is False
    (basic / SUMMARY_FILE).write_text(
        json.dumps(
            {
                "slo": {
                    "gates": [{"name": "chat_p95_ms", "threshold": 1.5, "value": 1.9, "pass": False}],
                    "pass": False,
                }
            }
        )
    )
    data = build(basic)
    assert data["slo"]["source"] == "summary.json" and data["slo"]["pass"] is False
    assert data["slo"]["gates"] == [
        {"name": "chat_p95_ms", "threshold": 1.5, "value": 1.9, "pass": False, "op": "<="}
    ]


def _chaos_run(d: Path, *, events: bool, slow_tail_s: int = 0, base_ms: float = 1.0) -> None:
    """40 s at 10 req/s: 1 ms, but 2 ms (and 1 in 10 failing) while slow-sae is on in [10, 20),
    staying slow for ``slow_tail_s`` more seconds."""
    recs = []
    for i in range(400):
        ts = T0 + i / 10
        inside = 10 <= i / 10 < 20
        slow = 10 <= i / 10 < 20 + slow_tail_s
        status = 503 if inside and i % 10 == 0 else 200
        recs.append(chat(ts, base_ms * (2 if slow else 1), status, chaos=["slow-sae"] if inside else []))
    write(d / CHAT_FILE, recs)
    if events:
        write(
            d / CHAOS_EVENTS_FILE,
            [
                {"ts": T0 + 10, "action": "enable", "flag": "slow-sae", "params": {"percent": 50.0}},
                {"ts": T0 + 20, "action": "disable", "flag": "slow-sae", "params": {}},
            ],
        )


def test_chaos_windows_from_event_log_are_exact(tmp_path: Path) -> None:
    _chaos_run(tmp_path, events=True)
    ch = build(tmp_path)["chaos"]
    assert ch["source"] == "event_log"
    (w,) = ch["windows"]
    assert (w["flag"], w["start"], w["end"], w["params"]) == ("slow-sae", T0 + 10, T0 + 20, {"percent": 50.0})
    assert [w[k]["chat"]["requests"] for k in ("pre", "during", "post")] == [100, 100, 100]
    assert [w[k]["chat"]["p95_ms"] for k in ("pre", "during", "post")] == [1.0, 2.0, 1.0]
    assert [w[k]["chat"]["error_rate"] for k in ("pre", "during", "post")] == [0.0, 0.1, 0.0]
    assert w["delta"]["during"]["chat_p95_ms"] == pytest.approx(1.0)
    assert w["delta"]["during"]["error_rate"] == pytest.approx(0.1)
    assert w["delta"]["post"]["chat_p95_ms"] == pytest.approx(0.0)
    assert (w["recovered"], w["recover_s"]) == (True, 0.0)
    assert w["during"]["chat"]["rps"] == pytest.approx(10.0)


def test_time_to_recover_counts_the_slow_tail(tmp_path: Path) -> None:
    # 100 ms -> 200 ms: well past the recovery tolerance (10 % or 5 ms of the pre p95)
    _chaos_run(tmp_path, events=True, slow_tail_s=5, base_ms=100.0)
    (w,) = build(tmp_path)["chaos"]["windows"]
    assert w["recovered"] is True and w["recover_s"] == pytest.approx(5.0)
    assert w["post"]["chat"]["p95_ms"] == pytest.approx(200.0, rel=1e-3)


def test_chaos_windows_from_records_when_no_event_log(tmp_path: Path) -> None:
    _chaos_run(tmp_path, events=False)
    ch = build(tmp_path)["chaos"]
    assert ch["source"] == "records"
    (w,) = ch["windows"]
    assert (w["start"], w["end"]) == (T0 + 10, T0 + 20)  # 1 s buckets for a 40 s run
    # bucket-resolution parts use the series' 2-significant-figure buckets: 1000 us is in [1000, 1003]
    assert [w[k]["chat"]["p95_ms"] for k in ("pre", "during", "post")] == [1.003, 2.007, 1.003]
    assert [w[k]["chat"]["requests"] for k in ("pre", "during", "post")] == [100, 100, 100]


def test_ttl_expiry_and_disable_all_close_windows(tmp_path: Path) -> None:
    _chaos_run(tmp_path, events=False)
    write(
        tmp_path / CHAOS_EVENTS_FILE,
        [
            {"ts": T0 + 5, "action": "enable", "flag": "drop-s3", "params": {"expires_at": T0 + 8}},
            {"ts": T0 + 10, "action": "enable", "flag": "slow-sae", "params": {}},
            {"ts": T0 + 12, "action": "enable", "flag": "rate-limit-spike", "params": {"severity": "soft"}},
            {"ts": T0 + 20, "action": "disable-all", "flag": None, "params": {}},
            {"ts": T0 + 20, "action": "disable-all", "flag": None, "params": {}},
        ],
    )  # duplicate: ignored
    ws = [(w["flag"], w["start"] - T0, w["end"] - T0) for w in build(tmp_path)["chaos"]["windows"]]
    assert ws == [("drop-s3", 5, 8), ("slow-sae", 10, 20), ("rate-limit-spike", 12, 20)]


def test_two_dirs_merge_exactly_like_one_combined_dir(tmp_path: Path) -> None:
    a, b, both = tmp_path / "a", tmp_path / "b", tmp_path / "both"
    for i in range(600):
        rec = chat(T0 + i / 7, 1 + (i * 37 % 1000) / 3, 200 if i % 13 else 500)
        e = expl(T0 + i / 7, 100 + (i * 17 % 300), granularity="token" if i % 5 == 0 else "sentence")
        write((a if i % 2 else b) / CHAT_FILE, [rec])
        write((a if i % 3 else b) / EXPLANATION_FILE, [e])
        write(both / CHAT_FILE, [rec])
        write(both / EXPLANATION_FILE, [e])
    events = [
        {"ts": T0 + 30, "action": "enable", "flag": "drop-s3", "params": {}},
        {"ts": T0 + 50, "action": "disable", "flag": "drop-s3", "params": {}},
    ]
    for d in (a, b, both):
        write(d / CHAOS_EVENTS_FILE, events)
    merged, one = build(a, b, tmp=tmp_path), build(both, tmp=tmp_path)
    for key in ("chat", "explanations", "series", "slo", "run"):
        assert merged[key] == one[key], key
    assert merged["chaos"]["windows"] == one["chaos"]["windows"]
    assert merged["chat"]["requests"] == 600


def test_merging_runs_with_different_settings_warns_and_names_them(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, shard, attach in ((a, "1/2", 0.3), (b, "2/2", 0.3)):
        write(d / CHAT_FILE, [chat(T0 + 1, 1.0, 200)])
        settings = {"shard": shard, "attach_rate": attach, "concurrency": 10, "results_dir": str(d)}
        (d / SUMMARY_FILE).write_text(json.dumps({"settings": settings}))
    assert build(a, b, tmp=tmp_path)["inputs"]["warnings"] == []  # shards of one run
    (b / SUMMARY_FILE).write_text(
        json.dumps({"settings": {"shard": "2/2", "attach_rate": 0.9, "concurrency": 10}})
    )
    warnings = build(a, b, tmp=tmp_path)["inputs"]["warnings"]
    assert warnings == ["merging runs with different settings: attach_rate (0.3 vs 0.9)"]


def test_parallel_scan_over_byte_ranges_equals_serial(basic: Path) -> None:
    files = [(CHAT, basic / CHAT_FILE), (EXPLANATION, basic / EXPLANATION_FILE)]
    plan = Plan(t0=T0, bucket_s=1.0, boundaries=(T0 + 5, T0 + 15))
    ranges = line_ranges(basic / CHAT_FILE, range_bytes=700)
    assert len(ranges) > 3 and ranges[0][0] == 0 and ranges[-1][1] == (basic / CHAT_FILE).stat().st_size
    serial = report.scan(files, plan, jobs=1)
    parallel = report.scan(files, plan, jobs=2, range_bytes=700, min_parallel_bytes=0)
    assert parallel.chat_counts == serial.chat_counts
    assert parallel.seg_hist == serial.seg_hist and parallel.tb_hist == serial.tb_hist
    assert parallel.lines == serial.lines == {"chat": 25, "explanation": 6}


def test_missing_inputs_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        build(tmp_path / "nope")
    with pytest.raises(HarnessError, match=r"no chat_results\.jsonl"):
        build(tmp_path)


def test_only_explanations_or_only_chat_still_report(tmp_path: Path) -> None:
    write(tmp_path / EXPLANATION_FILE, [expl(T0, 10.0)])
    data = build(tmp_path)
    assert data["chat"]["requests"] == 0 and data["explanations"]["traces"] == 1


def test_flag_enabled_before_the_logged_events_starts_at_the_run(tmp_path: Path) -> None:
    """The load runner copies only its run's events: a lone disable means 'on since the start'."""
    _chaos_run(tmp_path, events=False)
    write(
        tmp_path / CHAOS_EVENTS_FILE, [{"ts": T0 + 20, "action": "disable", "flag": "slow-sae", "params": {}}]
    )
    (w,) = build(tmp_path)["chaos"]["windows"]
    assert (w["start"], w["end"]) == (T0, T0 + 20)
    assert [w[k]["chat"]["requests"] for k in ("pre", "during", "post")] == [0, 200, 200]
    assert w["during"]["chat"]["error_rate"] == pytest.approx(0.05)
    md_data = json.loads(json.dumps(w, default=str))
    assert md_data["pre"]["chat"]["p95_ms"] is None


def test_dropped_requests_count_at_their_intended_start_without_latency(basic: Path) -> None:
    write(basic / CHAT_FILE, [chat(None, None, 0, error_class="dropped", intended_ts=T0 + 3, late=True)])  # type: ignore[arg-type]
    c = build(basic)["chat"]
    assert (c["requests"], c["dropped"], c["late"], c["latency_ms"]["count"]) == (26, 1, 1, 24)
    assert c["error_classes"]["dropped"] == 1


def test_window_still_open_at_the_end_runs_to_the_last_record(tmp_path: Path) -> None:
    _chaos_run(tmp_path, events=False)
    write(
        tmp_path / CHAOS_EVENTS_FILE, [{"ts": T0 + 30, "action": "enable", "flag": "drop-s3", "params": {}}]
    )
    (w,) = build(tmp_path)["chaos"]["windows"]
    assert (w["start"], w["end"], w["recovered"], w["recover_s"]) == (T0 + 30, None, None, None)
    # pre is as long as the window was seen: first record in it to the last record (9.9 s)
    assert [w[k]["chat"]["requests"] for k in ("pre", "during", "post")] == [99, 100, 0]


def test_a_lane_that_stays_slow_is_not_recovered(tmp_path: Path) -> None:
    _chaos_run(tmp_path, events=True, slow_tail_s=100, base_ms=100.0)
    (w,) = build(tmp_path)["chaos"]["windows"]
    assert (w["recovered"], w["recover_s"]) == (False, None)


def test_events_from_before_the_run_open_or_drop_windows(tmp_path: Path) -> None:
    """The runner copies the last event before the run (before_window): an enable opens the
    window from the run's start; a disable, or a window that ended before the run, adds nothing."""
    _chaos_run(tmp_path, events=False)
    write(tmp_path / CHAOS_EVENTS_FILE, [
        {"ts": T0 - 60, "action": "enable", "flag": "drop-s3", "params": {}, "before_window": True},
        {"ts": T0 - 50, "action": "disable", "flag": "drop-s3", "params": {}},
        {"ts": T0 - 5, "action": "disable", "flag": "fail-attribution", "params": {}, "before_window": True},
        {"ts": T0 - 1, "action": "enable", "flag": "slow-sae", "params": {}, "before_window": True},
        {"ts": T0 + 20, "action": "disable", "flag": "slow-sae", "params": {}}])  # fmt: skip
    (w,) = build(tmp_path)["chaos"]["windows"]
    assert (w["flag"], w["start"], w["end"]) == ("slow-sae", T0 - 1, T0 + 20)
    assert [w[k]["chat"]["requests"] for k in ("pre", "during", "post")] == [0, 200, 200]
