"""Load settings, shards, pacing, pre-flight parsing and the summary's gates and validity."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from hif.config import add_options, build
from hif.errors import ConfigError
from hif.harness.load.pacing import TokenBucket, arrivals, parse_shard, share
from hif.harness.load.preflight import served_featuresets, unavailable_featuresets
from hif.harness.load.requests import ChatRequests
from hif.harness.load.settings import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SLO_FAILED,
    LoadSettings,
    local_share,
    parse_slos,
)
from hif.harness.load.summary import build_summary
from hif.harness.load.tally import (
    CHAT_INTENDED,
    CHAT_SERVICE,
    LOOP_LAG,
    SEND_LAG,
    SLA_SENTENCE,
    Bucket,
    Tally,
)
from hif.harness.stats import Interval, LatencyHistogram


def test_runbook_flags_parse() -> None:
    p = argparse.ArgumentParser()
    add_options(p, LoadSettings)
    flags = (
        "--base-url http://localhost:8080 --concurrency 500 --duration-seconds 600 --attach-rate 0.3 "
        "--granularity sentence --features sae-gpt4-2m --timeout-seconds 15 --auth-token t --tenant-id a "
        "--rps-limit 100 --results-dir /tmp/x --shard 2/3 --processes 2"
    )
    args = p.parse_args(flags.split(" "))
    s = build(LoadSettings, cli=args, env={})
    assert (s.concurrency, s.duration_seconds, s.attach_rate, s.rps_limit) == (500, 600.0, 0.3, 100.0)
    assert (s.results_dir, s.shard_index, s.processes) == (Path("/tmp/x"), (2, 3), 2)
    assert s.public()["auth_token"] == "***"


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"attach_rate": 1.5}, "attach_rate"),
        ({"concurrency": 0}, "concurrency"),
        ({"base_url": "localhost:8080"}, "base_url"),
        ({"rps_limit": 10, "arrival_rate": 10}, "arrival_rate"),
        ({"shard": "3/2"}, "shard"),
        ({"shard": "x"}, "shard"),
        ({"slo": ("p95=1",)}, "slo"),
    ],
)
def test_bad_settings_name_their_key(kw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        LoadSettings(**kw)  # type: ignore[arg-type]
    assert info.value.key == key


def test_slos_parse() -> None:
    assert parse_slos(["chat_p95_ms=500", "error_rate=0.01"]) == {"chat_p95_ms": 500.0, "error_rate": 0.01}
    with pytest.raises(ConfigError, match="not a number"):
        parse_slos(["chat_p95_ms=fast"])


def test_shards_split_exactly() -> None:
    assert [share(10, i, 3) for i in (1, 2, 3)] == [4, 3, 3]
    assert sum(share(501, i, 7) for i in range(1, 8)) == 501
    assert parse_shard("1/1") == (1, 1)
    s = LoadSettings(concurrency=10, rps_limit=90, max_requests=100, shard="3/3")
    assert local_share(s) == local_share(dataclasses.replace(s, shard="2/3"))
    mine = local_share(s)
    assert (mine.workers, mine.rps_limit, mine.max_requests) == (3, 30.0, 33)
    with pytest.raises(ConfigError, match="cannot be split"):
        local_share(LoadSettings(concurrency=2, shard="3/3"))


def test_token_bucket_keeps_owed_slots_up_to_the_backlog() -> None:
    b = TokenBucket(10.0, max_backlog_s=1.0)
    assert [b.reserve(0.0) for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    # all workers were stuck until t=0.75: the owed slots keep their times (no coordinated omission)
    assert b.reserve(0.75) == pytest.approx(0.3)
    # after a 5 s stall only 1 s of slots is still owed
    assert b.reserve(5.4) == pytest.approx(4.4)


def test_arrivals_constant_and_poisson() -> None:
    it = arrivals(4.0, 10.0, "constant", 0)
    assert [next(it) for _ in range(3)] == pytest.approx([10.0, 10.25, 10.5])
    p = arrivals(1000.0, 0.0, "poisson", 7)
    times = [next(p) for _ in range(20000)]
    assert times == sorted(times)
    assert 20000 / times[-1] == pytest.approx(1000.0, rel=0.05)
    again = arrivals(1000.0, 0.0, "poisson", 7)
    assert [next(again) for _ in range(5)] == times[:5]  # seeded


def test_featureset_listing_shapes() -> None:
    body = {
        "data": [
            {"name": "a", "available": True},
            {"name": "b", "available": False, "reason": "weights missing"},
            {"id": "c"},
        ]
    }
    assert served_featuresets(body) == ["a", "c"]
    assert unavailable_featuresets(body) == {"b": "weights missing"}
    assert served_featuresets({"featuresets": ["x", "y"]}) == ["x", "y"]
    assert served_featuresets("junk") == []


def test_mix_draws_about_one_token_in_five() -> None:
    s = LoadSettings(attach_rate=0.5, granularity="mix", seed=3)
    reqs = ChatRequests(s.request_mix())
    rng = reqs.rng(0)
    draws = [reqs.draw(rng) for _ in range(20000)]
    attached = [g for a, g, _ in draws if a]
    assert len(attached) / len(draws) == pytest.approx(0.5, abs=0.02)
    assert attached.count("token") / len(attached) == pytest.approx(0.2, abs=0.02)
    _, _, data = next(d for d in draws if d[1] == "token")
    assert b'"explain":{"granularity":"token","features":"sae-gpt4-2m"}' in data
    assert b'"stream":false' in data
    # the same seed draws the same sequence
    rng2 = ChatRequests(s.request_mix()).rng(0)
    assert [ChatRequests(s.request_mix()).draw(rng2)[:2] for _ in range(50)] == [d[:2] for d in draws[:50]]


# --- the summary -------------------------------------------------------------------------------


def tally_with(
    service_ms: list[float],
    *,
    errors: int = 0,
    lag_ms: float = 1.0,
    sla_ms: float = 0.0,
    late: int = 0,
    send_lag_ms: float = 0.1,
) -> Tally:
    t = Tally(1000.0, 1.0)
    b = Bucket(1000.0, 1001.0)
    ivs = []
    h, hi = LatencyHistogram(), LatencyHistogram()
    for ms in service_ms:
        h.record(ms)
        hi.record(ms)
    ivs += [Interval(CHAT_SERVICE, 1000.0, 1001.0, h), Interval(CHAT_INTENDED, 1000.0, 1001.0, hi)]
    lag = LatencyHistogram()
    lag.record(lag_ms)
    ivs.append(Interval(LOOP_LAG, 1000.0, 1001.0, lag))
    send = LatencyHistogram()
    send.record(send_lag_ms)
    ivs.append(Interval(SEND_LAG, 1000.0, 1001.0, send))
    b.counts["late"] = late
    if sla_ms:
        sla = LatencyHistogram()
        sla.record(sla_ms)
        ivs.append(Interval(SLA_SENTENCE, 1000.0, 1001.0, sla))
        b.counts.update({"traces": 1, "state:complete": 1})
    b.counts.update(
        {"requests": len(service_ms), "ok": len(service_ms) - errors, "status:200": len(service_ms)}
    )
    if errors:
        b.counts.update({"status:200": -errors, "status:503": errors, "class:http_5xx": errors})
    t.close_bucket(b, ivs)
    t.buckets[0] = b
    return t


def summarize(t: Tally, **kw: object) -> dict[str, object]:
    s = LoadSettings(**kw)  # type: ignore[arg-type]
    return build_summary(t, s, started_s=1000.0, ended_s=1001.0, meta={"run_id": "r"})


def test_summary_rates_and_gates() -> None:
    t = tally_with([10.0] * 95 + [100.0] * 5, errors=2, sla_ms=900.0)
    d = summarize(t, slo=("chat_p95_ms=50", "error_rate=0.05", "sentence_p95_ms=800"))
    chat = d["chat"]
    assert chat["requests"] == 100 and chat["error_rate"] == 0.02  # type: ignore[index]
    assert chat["http_5xx_rate"] == 0.02 and chat["by_status"] == {"200": 98, "503": 2}  # type: ignore[index]
    gates = {g["name"]: g["pass"] for g in d["slo"]["gates"]}  # type: ignore[index]
    assert gates == {"chat_p95_ms": True, "error_rate": True, "sentence_p95_ms": False}
    assert d["exit_code"] == EXIT_SLO_FAILED
    assert d["buckets"][0]["requests"] == 100  # type: ignore[index]
    assert summarize(t)["exit_code"] == EXIT_OK


def test_generator_bottleneck_marks_the_run_invalid() -> None:
    # asked for 1000 req/s, sent 100, every send on time: the generator did not keep the schedule
    d = summarize(tally_with([10.0] * 100), rps_limit=1000, concurrency=10)
    assert d["generator"]["valid"] is False  # type: ignore[index]
    assert d["exit_code"] == EXIT_INVALID
    # the same shortfall with sends late because every worker waited on the server: valid
    d = summarize(tally_with([1000.0] * 100, late=90), rps_limit=1000, concurrency=10)
    assert d["generator"]["valid"] is True  # type: ignore[index]
    # a stalled event loop or free workers sending late invalidate too, even with no rate asked
    d = summarize(tally_with([10.0] * 100, lag_ms=500.0))
    assert d["exit_code"] == EXIT_INVALID
    assert "event-loop lag" in d["generator"]["reasons"][0]  # type: ignore[index]
    d = summarize(tally_with([10.0] * 100, send_lag_ms=80.0))
    assert "send lag" in d["generator"]["reasons"][0]  # type: ignore[index]


def test_tally_merges_exactly_through_json() -> None:
    a, b = tally_with([10.0] * 10), tally_with([20.0] * 30)
    merged = Tally.from_json(a.to_json())
    merged.merge(Tally.from_json(b.to_json()))
    assert merged.counts["requests"] == 40
    assert merged.hist(CHAT_SERVICE).count == 40
    assert merged.buckets[0].counts["requests"] == 40
    assert merged.hist(CHAT_SERVICE).percentile(50) == pytest.approx(20.0, rel=1e-3)


def test_only_the_first_shard_and_the_parent_process_scrape_metrics(tmp_path: Path) -> None:
    from hif.harness.load.procs import child_settings

    s = LoadSettings(base_url="http://gw.example:8080", processes=2)
    assert s.metrics_urls() == {
        "gateway": "http://gw.example:9091/metrics",
        "explainer": "http://gw.example:9090/metrics",
    }
    assert child_settings(s, 1, tmp_path, "r").metrics_urls() == {}  # the parent scrapes for them
    assert LoadSettings(shard="2/3").metrics_urls() == {}
    assert LoadSettings(metrics_url_explainer="off").metrics_urls() == {
        "gateway": "http://localhost:9091/metrics"
    }


def test_a_poisson_shortfall_within_its_noise_keeps_the_run_valid() -> None:
    from hif.harness.load.summary import short_of_rate

    # 4 req/s for 15 s: 60 expected; 46 is 1.8 sd short, 20 is 5 sd short.
    assert not short_of_rate(4.0, 46, 15.0, poisson=True)
    assert short_of_rate(4.0, 46, 15.0, poisson=False)  # a constant schedule owes every slot
    assert short_of_rate(4.0, 20, 15.0, poisson=True)
    # At high rates the 3 sd band is narrower than 20%: the 80% floor decides.
    assert short_of_rate(1000.0, 7000, 10.0, poisson=True)
    assert not short_of_rate(1000.0, 8500, 10.0, poisson=True)
