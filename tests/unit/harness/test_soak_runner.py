"""The soak orchestrator against a fake load runner and fake /metrics, at the library's seams.

The fake stands where ``run_load`` stands: it writes chat records to the shared result files and
returns a real load summary (built by the load runner's own ``build_summary``), on a virtual
clock, so the soak's series, checkpoint and resume are checked without sockets or sleeps.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hif.errors import HarnessError, PreflightError
from hif.harness import LoadSettings, LoadSummary
from hif.harness.load.summary import build_summary
from hif.harness.load.tally import CHAT_SERVICE, SLA_SENTENCE, SLA_TOKEN, Tally
from hif.harness.prometheus import default_metrics_urls
from hif.harness.records import CHAT_FILE, SOAK_SUMMARY_FILE
from hif.harness.soak import cli as soak_cli
from hif.harness.soak import health
from hif.harness.soak.drift import LEAK
from hif.harness.soak.runner import SoakSettings, run_soak
from hif.harness.stats import Interval, LatencyHistogram
from hif.metrics import ExplainerMetrics, GatewayMetrics, WorkerProcessCollector, register_process_metrics
from tests.schemas import validate_file

MIB = 2**20
REQUESTS = 50
SUMMARIES: dict[tuple[Any, ...], dict[str, Any]] = {}


class FakeLoad:
    """run_load's stand-in: one segment per call; can crash or be stopped at a given call."""

    def __init__(
        self,
        *,
        t0: float = 1_800_000_000.0,
        latency_ms: Callable[[int], float] = lambda i: 100.0,
        crash_at: int | None = None,
        stop_at: int | None = None,
    ) -> None:
        self.now, self.latency_ms = t0, latency_ms
        self.crash_at, self.stop_at = crash_at, stop_at
        self.calls: list[LoadSettings] = []

    async def __call__(self, settings: LoadSettings, *, stop: asyncio.Event) -> LoadSummary:
        call = len(self.calls)
        self.calls.append(settings)
        self._write(settings, REQUESTS // 2 if call in (self.crash_at, self.stop_at) else REQUESTS)
        if call == self.crash_at:
            raise RuntimeError("target vanished")
        if call == self.stop_at:
            stop.set()
        start, self.now = self.now, self.now + settings.duration_seconds
        return LoadSummary(self._shifted(settings, start, call))

    def _shifted(self, settings: LoadSettings, start: float, call: int) -> dict[str, Any]:
        """The real summary builder is slow-ish (HDR percentiles): build each shape once, move it in time."""
        key = (self.latency_ms(call), settings.granularity, settings.attach_rate, settings.duration_seconds)
        if key not in SUMMARIES:
            SUMMARIES[key] = self._summary(settings, 0.0, call)
        data = copy.deepcopy(SUMMARIES[key])
        data.update(run_id=settings.run_id, started_at=start, ended_at=start + settings.duration_seconds)
        for bucket in data["buckets"]:
            bucket["start_s"] += start
            bucket["end_s"] += start
        return data

    def _write(self, settings: LoadSettings, n: int) -> None:
        settings.results_dir.mkdir(parents=True, exist_ok=True)
        with open(settings.results_dir / CHAT_FILE, "a" if settings.append else "w") as fh:
            fh.writelines(json.dumps({"run": settings.run_id, "status": 200}) + "\n" for _ in range(n))

    def _summary(self, settings: LoadSettings, start: float, call: int) -> dict[str, Any]:
        tally = Tally(start, settings.bucket_seconds)
        bucket = tally.bucket(start)
        traces = round(REQUESTS * settings.attach_rate)
        bucket.counts.update(
            {
                "requests": REQUESTS,
                "ok": REQUESTS - 1,
                "status:200": REQUESTS - 1,
                "status:503": 1,
                "traces": traces,
                "state:complete": traces - 1,
                "state:expired": 1,
                "good": REQUESTS - 1,  # toward goodput: every answered chat (a plain-chat soak)
            }
        )
        chat, sentence, token = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
        for _ in range(REQUESTS - 1):
            chat.record(self.latency_ms(call))
        for _ in range(traces - 1):
            (token if settings.granularity == "token" else sentence).record(900.0)
        end = start + settings.duration_seconds
        intervals = [
            Interval(tag, start, end, h)
            for tag, h in ((CHAT_SERVICE, chat), (SLA_SENTENCE, sentence), (SLA_TOKEN, token))
            if h.count
        ]
        tally.close_bucket(bucket, intervals)
        return build_summary(tally, settings, started_s=start, ended_s=end, meta={"run_id": settings.run_id})


class FakeMetrics:
    """Both /metrics endpoints: the explainer's memory grows 50 MiB per scrape, the gateway's is flat."""

    def __init__(self) -> None:
        self.scrapes = 0

    def __call__(self, url: str) -> str:
        if ":9090" in url:
            self.scrapes += 1
            rss = 400 * MIB + 50 * MIB * self.scrapes
            extra = "explainer_queue_lag_seconds 0.25\nbackpressure_level 1\n"
        else:
            rss, extra = 200 * MIB, "gateway_backpressure_level 0\n"
        return f"process_resident_memory_bytes {rss}\nprocess_open_fds 40\n{extra}"


def settings(tmp_path: Path, **kw: Any) -> SoakSettings:
    base = dict(
        base_url="http://127.0.0.1:8080",
        hours=1.0,
        segment_minutes=10.0,
        profile="spiky",
        concurrency_scale=0.01,
        results_dir=tmp_path,
    )  # six segments of 10 min, on a virtual clock
    return SoakSettings(**{**base, **kw})


async def no_check(settings: LoadSettings) -> dict[str, Any] | None:
    """The pre-flight of a soak against no server: nothing to check, the featureset as given."""
    return None


def soak(
    s: SoakSettings,
    load: FakeLoad,
    fetch: Callable[[str], str] | None = None,
    check: Callable[[LoadSettings], Awaitable[dict[str, Any] | None]] = no_check,
) -> dict[str, Any]:
    return asyncio.run(run_soak(s, load=load, fetch=fetch or FakeMetrics(), check=check))


def run_ids(tmp_path: Path) -> list[str]:
    return [json.loads(line)["run"] for line in (tmp_path / CHAT_FILE).read_text().splitlines()]


def test_segments_follow_the_plan_and_feed_the_load_runner(tmp_path: Path) -> None:
    load = FakeLoad()
    summary = soak(settings(tmp_path), load)
    assert summary["status"] == "finished" and len(summary["segments"]) == 6
    assert [(c.concurrency, c.rps_limit) for c in load.calls] == [(8, 0.0), (2, 1.0)] * 3
    assert [c.granularity for c in load.calls] == ["mix"] * 4 + ["token", "mix"]
    assert [c.attach_rate for c in load.calls] == [0.3, 0.35, 0.4, 0.45, 0.5, 0.45]
    assert [c.append for c in load.calls] == [False] + [True] * 5  # one set of files for the soak
    assert [c.run_id for c in load.calls] == [f"soak-{i:04d}" for i in range(1, 7)]
    assert all(c.duration_seconds == 600.0 for c in load.calls)
    assert all(c.bucket_seconds == 60.0 for c in load.calls)  # one-minute buckets inside a segment


def test_summary_holds_the_time_series_health_and_a_leak_finding(tmp_path: Path) -> None:
    summary = soak(settings(tmp_path), FakeLoad())
    assert json.loads((tmp_path / SOAK_SUMMARY_FILE).read_text()) == json.loads(json.dumps(summary))
    validate_file(tmp_path / SOAK_SUMMARY_FILE)
    series = summary["series"]
    assert series["segment"] == [1, 2, 3, 4, 5, 6]
    assert series["phase"] == ["high", "low"] * 3
    assert series["chat_rps"] == [pytest.approx(REQUESTS / 600.0, abs=0.005)] * 6  # rounded to 0.01
    assert series["chat_p95_ms"] == [pytest.approx(100.0, rel=0.01)] * 6
    assert series["chat_rate_5xx"] == [pytest.approx(1 / REQUESTS)] * 6
    assert series["sentence_p95_ms"][4] is None and series["token_p95_ms"][4] == pytest.approx(900, rel=0.01)
    assert all(
        r == pytest.approx(1 / round(REQUESTS * a), abs=1e-5)
        for r, a in zip(series["expired_failed_rate"], series["attach_rate"], strict=True)
    )
    assert series["explainer_rss_bytes"] == [400 * MIB + 50 * MIB * i for i in range(2, 8)]
    assert series["t_h"] == pytest.approx([i / 6 for i in range(1, 7)])
    seg = summary["segments"][0]
    assert seg["plan"] == {k: seg[k] for k in seg["plan"]} and seg["plan"]["phase"] == "high"
    assert seg["explanations"]["sla_ms"]["sentence"]["p95_ms"] == seg["explanations"]["sentence_p95_ms"]
    assert seg["health"]["explainer"]["queue_lag_s"] == 0.25 and seg["health"]["gateway"]["ok"]
    assert len(seg["buckets"]) >= 1 and seg["buckets"][0]["requests"] == REQUESTS
    drift = summary["drift"]
    assert drift["series"]["explainer_rss_bytes"]["verdict"] == LEAK
    assert drift["series"]["gateway_rss_bytes"]["verdict"] == "stable"
    assert drift["overall"] == LEAK and any("explainer_rss_bytes" in f for f in drift["findings"])
    assert summary["baseline_health"]["gateway"]["rss_bytes"] == 200 * MIB


def test_segments_that_break_an_slo_are_flagged(tmp_path: Path) -> None:
    summary = soak(settings(tmp_path), FakeLoad(latency_ms=lambda i: 800.0 if i == 2 else 100.0))
    flagged = [s["number"] for s in summary["segments"] if "chat_p95_ms" in s["slo_breaches"]]
    assert flagged == [3]
    assert "chat_p95_ms" in summary["segments"][2]["buckets"][0]["slo_breaches"]
    # One 503 in 50 is a 2% error rate: over the runbook's 1% budget in every segment.
    assert all("error_rate" in s["slo_breaches"] for s in summary["segments"])
    relaxed_slos = ("error_rate=0.05", "expired_failed_rate=0.1")
    relaxed = soak(settings(tmp_path / "relaxed", slo=relaxed_slos), FakeLoad())
    assert not any(s["slo_breaches"] for s in relaxed["segments"])


def test_a_goodput_floor_flags_segments_and_buckets_below_it(tmp_path: Path) -> None:
    # 49 good chats in a 10-minute segment: 0.08 good chats per second
    low = soak(settings(tmp_path / "low", slo=("goodput_rps>=1", "error_rate=0.05")), FakeLoad())
    assert all("goodput_rps" in s["slo_breaches"] for s in low["segments"])
    assert all("goodput_rps" in s["buckets"][0]["slo_breaches"] for s in low["segments"])
    assert low["segments"][0]["chat"]["goodput_rps"] == pytest.approx(49 / 600, abs=0.01)
    met = soak(settings(tmp_path / "met", slo=("goodput_rps>=0.05", "error_rate=0.05")), FakeLoad())
    assert not any("goodput_rps" in s["slo_breaches"] for s in met["segments"])


def test_resume_after_a_crash_reruns_only_the_unfinished_segment(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="target vanished"):
        soak(settings(tmp_path), FakeLoad(crash_at=3))
    saved = json.loads((tmp_path / SOAK_SUMMARY_FILE).read_text())
    assert saved["status"] == "interrupted" and len(saved["segments"]) == 3
    assert run_ids(tmp_path).count("soak-0004") == REQUESTS // 2  # the half-written segment

    load = FakeLoad(t0=1_800_000_100.0)
    summary = soak(settings(tmp_path, resume=True), load)
    assert [c.run_id for c in load.calls] == ["soak-0004", "soak-0005", "soak-0006"]
    assert all(c.append for c in load.calls)
    assert summary["status"] == "finished" and summary["resumes"] == 1
    assert [s["number"] for s in summary["segments"]] == [1, 2, 3, 4, 5, 6]
    assert summary["segments"][:3] == saved["segments"]  # finished segments are kept as they were
    ids = run_ids(tmp_path)
    assert [ids.count(f"soak-{i:04d}") for i in range(1, 7)] == [REQUESTS] * 6  # the partial one is gone


def test_a_stop_drops_the_segment_in_flight_and_resume_finishes(tmp_path: Path) -> None:
    summary = soak(settings(tmp_path), FakeLoad(stop_at=1))
    assert summary["status"] == "interrupted" and len(summary["segments"]) == 1
    load = FakeLoad(t0=1_800_000_100.0)
    resumed = soak(settings(tmp_path, resume=True, hours=5.0, profile="heavy"), load)  # plan from checkpoint
    assert [c.concurrency for c in load.calls] == [2, 8, 2, 8, 2]
    assert resumed["status"] == "finished" and len(resumed["segments"]) == 6
    assert soak(settings(tmp_path, resume=True), FakeLoad())["segments"] == resumed["segments"]


def test_resume_without_a_checkpoint_is_a_harness_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="nothing to resume"):
        soak(settings(tmp_path, resume=True), FakeLoad())
    (tmp_path / SOAK_SUMMARY_FILE).write_text("{not json")
    with pytest.raises(HarnessError, match="not valid JSON"):
        soak(settings(tmp_path, resume=True), FakeLoad())


def test_unreachable_metrics_are_recorded_and_the_soak_goes_on(tmp_path: Path) -> None:
    def refuse(url: str) -> str:
        raise OSError("connection refused")

    summary = soak(settings(tmp_path), FakeLoad(), fetch=refuse)
    assert summary["status"] == "finished"
    assert summary["segments"][0]["health"]["gateway"] == {
        "ok": False,
        "url": "http://127.0.0.1:9091/metrics",
        "error": "OSError: connection refused",
    }
    assert summary["series"]["gateway_rss_bytes"] == [None] * 6
    assert summary["drift"]["series"]["gateway_rss_bytes"]["verdict"] == "insufficient-data"


def test_health_parses_real_exposition_text() -> None:
    registry = CollectorRegistry()
    register_process_metrics(registry)
    ex = ExplainerMetrics(registry)
    GatewayMetrics(registry).backpressure_level.set(2)
    ex.queue_lag.set(1.5)
    ex.backpressure_actions.labels("reduce-topk", "soft").inc(3)
    ex.jobs.labels("complete").inc(7)
    WorkerProcessCollector(lambda: [os.getpid(), 2**22 + 1], registry)  # the second pid cannot exist
    parsed = health.parse_health(generate_latest(registry).decode())
    assert parsed["rss_bytes"] > 0 and parsed["open_fds"] > 0
    assert parsed["workers_rss_bytes"] == pytest.approx(parsed["rss_bytes"], rel=0.1)  # this process
    assert parsed["workers_open_fds"] > 0
    assert parsed["queue_lag_s"] == 1.5 and parsed["backpressure_level"] == 2
    assert parsed["backpressure_actions"] == {"reduce-topk/soft": 3.0}
    assert parsed["explainer_jobs"] == {"complete": 7.0}


def test_metrics_urls_default_to_the_base_url_host() -> None:
    assert default_metrics_urls("http://10.0.0.5:8080") == (
        "http://10.0.0.5:9091/metrics",
        "http://10.0.0.5:9090/metrics",
    )
    s = SoakSettings(base_url="http://gw:8080", metrics_url_explainer="http://ex:9999/metrics")
    assert s.metrics_urls() == {"gateway": "http://gw:9091/metrics", "explainer": "http://ex:9999/metrics"}


def test_cli_turns_bad_input_into_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert soak_cli.main(["--resume", "--results-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hif: --resume: no soak_summary.json in {tmp_path} (nothing to resume)"
    ]
    assert soak_cli.main(["--hours", "0"]) == 2
    assert "hours: must be > 0" in capsys.readouterr().err
    assert soak_cli.main(["--slo", "p42=1"]) == 2
    assert "slo:" in capsys.readouterr().err


def test_a_soak_that_fails_its_preflight_writes_no_summary(tmp_path: Path) -> None:
    async def refuse(settings: LoadSettings) -> dict[str, Any] | None:
        raise PreflightError("featureset 'x' is not served; pass one of them with --features")

    with pytest.raises(PreflightError):
        soak(settings(tmp_path, features="x"), FakeLoad(), check=refuse)
    assert not (tmp_path / "soak_summary.json").exists()


def test_the_featureset_chosen_at_preflight_is_recorded_and_asked_for(tmp_path: Path) -> None:
    seen: list[LoadSettings] = []

    async def fallback(s: LoadSettings) -> dict[str, Any] | None:
        seen.append(s)
        return {"requested": "sae-gpt4-2m", "given": False, "used": "small-fs", "note": "..."}

    load = FakeLoad()
    summary = soak(settings(tmp_path, hours=1 / 3), load, check=fallback)
    assert seen[0].features is None and seen[0].attach_rate > 0  # none given: the runner decides
    assert summary["featureset"]["used"] == "small-fs" and summary["features"] is None
    assert {c.features for c in load.calls} == {"small-fs"}


def test_progress_lines_show_each_segments_results_not_its_plan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="hif.harness.soak.runner")
    soak(settings(tmp_path, hours=1 / 3), FakeLoad())
    done = [r.getMessage() for r in caplog.records if " done: " in r.getMessage()]
    assert len(done) == 2 and "{" not in "".join(done)
    assert "chats at" in done[0] and "chat p95 100 ms" in done[0] and "SLO breaches:" in done[0]
    assert all("{" not in r.getMessage() for r in caplog.records if "starts:" in r.getMessage())
