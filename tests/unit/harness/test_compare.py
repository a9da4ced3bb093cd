"""``hif compare`` on deterministic fixture folders: HDR interval logs and summaries written here."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from hif.errors import HarnessError
from hif.harness import records
from hif.harness.compare.cli import main
from hif.harness.compare.run import build_compare
from hif.harness.compare.settings import CompareSettings
from hif.harness.stats import Interval, LatencyHistogram, write_intervals
from tests.schemas import validate_file

T0 = 1_700_000_000.0
INTERVALS = 60
PER_INTERVAL = 200


def write_run(
    d: Path, *, seed: int, scale: float = 1.0, errors_every: int = 0, settings: dict[str, Any] | None = None
) -> Path:
    """One run folder: 60 one-second intervals of 200 lognormal chat latencies (median ~100 ms x scale),
    each interval with a slow phase of its own (a shared server state: correlated samples)."""
    rng = random.Random(seed)
    d.mkdir(parents=True)
    intervals, buckets = [], []
    for i in range(INTERVALS):
        state = rng.lognormvariate(0.0, 0.15)  # this second's server state
        h = LatencyHistogram()
        for _ in range(PER_INTERVAL):
            h.record(100.0 * scale * state * rng.lognormvariate(0.0, 0.4))
        intervals.append(Interval("chat.service", T0 + i, T0 + i + 1, h))
        errors = PER_INTERVAL // errors_every if errors_every else 0
        buckets.append({"start_s": T0 + i, "end_s": T0 + i + 1, "requests": PER_INTERVAL, "errors": errors})
    with open(d / records.HISTOGRAM_LOG_FILE, "w") as fh:
        write_intervals(fh, intervals)
    base = {"base_url": "http://127.0.0.1:8080", "concurrency": 10, "arrival_rate": 200.0, "attach_rate": 0.0}
    summary = {"v": records.SUMMARY_SCHEMA, "settings": {**base, **(settings or {})}, "buckets": buckets}
    (d / records.SUMMARY_FILE).write_text(json.dumps(summary))
    return d


def row(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in data["metrics"] if r["name"] == name)


def test_two_samples_of_one_distribution_are_within_noise(tmp_path: Path) -> None:
    a, b = write_run(tmp_path / "a", seed=1), write_run(tmp_path / "b", seed=2)
    data = build_compare(CompareSettings(baseline=a, candidate=b))
    for name in ("chat_p50_ms", "chat_p95_ms", "chat_p99_ms", "error_rate"):
        assert row(data, name)["verdict"] == "within_noise", row(data, name)
    assert data["worse"] == [] and data["exit_code"] == 0


def test_a_20_percent_latency_increase_is_worse_with_the_right_sign(tmp_path: Path) -> None:
    a, b = write_run(tmp_path / "a", seed=1), write_run(tmp_path / "b", seed=2, scale=1.2)
    data = build_compare(CompareSettings(baseline=a, candidate=b, fail_on="chat_p95_ms"))
    p95 = row(data, "chat_p95_ms")
    assert p95["verdict"] == "worse"
    assert p95["difference"] > 0 and p95["ci"][0] > 0
    assert 0.1 < p95["relative"] < 0.3
    assert data["failed"] == ["chat_p95_ms"] and data["exit_code"] == 1
    # the other way round it is better, never worse
    back = build_compare(CompareSettings(baseline=b, candidate=a, fail_on="chat_p95_ms"))
    assert row(back, "chat_p95_ms")["verdict"] == "better" and back["exit_code"] == 0


def test_blocks_not_requests_widen_the_interval(tmp_path: Path) -> None:
    """Resampling seconds keeps each second's shared state together: the interval is wider than
    the spread of 12,000 independent requests would suggest, so a 3% shift stays within noise."""
    a, b = write_run(tmp_path / "a", seed=1), write_run(tmp_path / "b", seed=1, scale=1.03)
    p95 = row(build_compare(CompareSettings(baseline=a, candidate=b)), "chat_p95_ms")
    assert p95["difference"] > 0
    assert p95["verdict"] == "within_noise"


def test_error_rate_increase_is_worse(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", seed=1, errors_every=100)
    b = write_run(tmp_path / "b", seed=2, errors_every=10)
    r = row(build_compare(CompareSettings(baseline=a, candidate=b)), "error_rate")
    assert r["a"] == pytest.approx(0.01) and r["b"] == pytest.approx(0.1)
    assert r["verdict"] == "worse"


def test_refuses_different_settings_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", seed=1)
    b = write_run(tmp_path / "b", seed=2, settings={"attach_rate": 0.3, "concurrency": 20})
    with pytest.raises(HarnessError, match=r"attach_rate: 0.0 vs 0.3.*concurrency|concurrency: 10 vs 20"):
        build_compare(CompareSettings(baseline=a, candidate=b))
    assert main([str(a), str(b)]) == 2
    assert "attach_rate" in capsys.readouterr().err
    assert main([str(a), str(b), "--force"]) == 0
    data = json.loads((b / "compare.json").read_text())
    assert data["forced"] and len(data["settings_differences"]) == 2


def test_cli_writes_files_that_match_the_schema(tmp_path: Path) -> None:
    a, b = write_run(tmp_path / "a", seed=1), write_run(tmp_path / "b", seed=2, scale=1.2)
    out = tmp_path / "out"
    code = main([str(a), str(b), "--out-dir", str(out), "--fail-on", "chat_p95_ms,sentence_p95_ms"])
    assert code == 1
    validate_file(out / "compare.json")
    md = (out / "compare.md").read_text()
    assert "| chat_p95_ms |" in md and "**worse**" in md
    html = (out / "compare.html").read_text()
    assert "<td>chat_p95_ms</td>" in html and "#c62828" in html


def test_bad_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", seed=1)
    assert main([str(a), str(tmp_path / "missing")]) == 2
    assert main([str(a), str(a), "--fail-on", "nonsense"]) == 2
    (tmp_path / "v9").mkdir()
    (tmp_path / "v9" / "summary.json").write_text(json.dumps({"v": "hif.summary.v9"}))
    assert main([str(a), str(tmp_path / "v9")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "unknown metric 'nonsense'" in err and "hif.summary.v9" in err


def test_reads_the_previous_summary_version(tmp_path: Path) -> None:
    a, b = write_run(tmp_path / "a", seed=1), write_run(tmp_path / "b", seed=2)
    old = json.loads((a / "summary.json").read_text())
    (a / "summary.json").write_text(json.dumps({**old, "v": "hif.summary.v2"}))
    assert row(build_compare(CompareSettings(baseline=a, candidate=b)), "chat_p95_ms")["a"] is not None


def test_capacity_frontiers_compare_by_their_intervals(tmp_path: Path) -> None:
    def search(d: Path, frontier: list[dict[str, Any]]) -> Path:
        d.mkdir()
        data = {"schema": records.CAPACITY_SCHEMA, "settings": {"base_url": "x"}, "frontier": frontier}
        (d / "capacity.json").write_text(json.dumps(data))
        return d

    a = search(tmp_path / "a", [{"attach_rate": 0.0, "rate_rps": 100.0, "interval_rps": [100.0, 110.0]}])
    b = search(tmp_path / "b", [{"attach_rate": 0.0, "rate_rps": 80.0, "interval_rps": [80.0, 88.0]}])
    c = search(tmp_path / "c", [{"attach_rate": 0.0, "rate_rps": 105.0, "interval_rps": [105.0, 110.0]}])
    assert row(build_compare(CompareSettings(baseline=a, candidate=b)), "frontier@0")["verdict"] == "worse"
    assert (
        row(build_compare(CompareSettings(baseline=a, candidate=c)), "frontier@0")["verdict"]
        == "within_noise"
    )


def test_frontiers_with_a_prompt_axis_compare_per_attach_rate_and_length(tmp_path: Path) -> None:
    def search(d: Path, rates: dict[int, float]) -> Path:
        d.mkdir()
        frontier = [{"attach_rate": 0.1, "prompt_tokens": p, "rate_rps": r, "interval_rps": [r, r * 1.1]}
                    for p, r in rates.items()]  # fmt: skip
        data = {"schema": records.CAPACITY_SCHEMA, "settings": {"base_url": "x"}, "frontier": frontier}
        (d / records.CAPACITY_JSON_FILE).write_text(json.dumps(data))
        return d

    a = search(tmp_path / "a", {128: 100.0, 2048: 40.0})
    b = search(tmp_path / "b", {128: 101.0, 2048: 20.0})
    data = build_compare(CompareSettings(baseline=a, candidate=b))
    assert row(data, "frontier@0.1/128tok")["verdict"] == "within_noise"
    assert row(data, "frontier@0.1/2048tok")["verdict"] == "worse"


def test_the_readme_command_parses() -> None:
    import re
    import shlex

    from hif.harness.compare.cli import build_parser

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    line = re.search(r"`(python -m tests\.load\.compare [^`]+)`", readme)
    assert line is not None
    args = build_parser().parse_args(shlex.split(line.group(1))[3:])
    assert args.fail_on == "chat_p95_ms,sentence_p95_ms"


def test_a_report_folder_reads_its_merged_shards(tmp_path: Path) -> None:
    from hif.harness.compare.inputs import load_source

    s1, s2 = write_run(tmp_path / "s1", seed=1), write_run(tmp_path / "s2", seed=2)
    merged = tmp_path / "merged"
    merged.mkdir()
    report = {"schema": records.REPORT_SCHEMA, "inputs": {"results_dirs": [str(s1), str(s2)]}}
    (merged / records.REPORT_JSON_FILE).write_text(json.dumps(report))
    source = load_source(merged)
    assert source.kind == "merged" and len(source.summaries) == 2 and len(source.hlogs) == 2
    data = build_compare(CompareSettings(baseline=s1, candidate=merged))
    # the shards' intervals of one second are one block: twice the samples, as many blocks
    assert row(data, "chat_p95_ms")["samples"] == [INTERVALS * PER_INTERVAL, 2 * INTERVALS * PER_INTERVAL]


def write_soak(d: Path, *, seed: int, scale: float = 1.0) -> Path:
    """A soak folder: three 20-second segments appended to one interval log (as the soak runner
    appends them), summary.json holding the last segment only, and soak_summary.json every
    segment's buckets with their counts. Only the first segment had errors: 10 of 200 a second."""
    write_run(d, seed=seed, scale=scale)
    summary = json.loads((d / records.SUMMARY_FILE).read_text())
    summary["buckets"] = summary["buckets"][40:]  # the last segment's
    (d / records.SUMMARY_FILE).write_text(json.dumps(summary))
    segments = []
    for n in range(3):
        buckets = []
        for i in range(20 * n, 20 * (n + 1)):
            errors = 10 if n == 0 else 0
            buckets.append({"start_ts": T0 + i, "end_ts": T0 + i + 1, "requests": PER_INTERVAL,
                            "errors": errors, "error_rate": errors / PER_INTERVAL, "traces": 0,
                            "expired": 0, "failed": 0, "shed": 0, "slo_breaches": []})  # fmt: skip
        segments.append({"number": n + 1, "buckets": buckets, "slo_breaches": []})
    soak = {
        "v": records.SOAK_SCHEMA,
        "status": "finished",
        "segments": segments,
        "plan": {"profile": "steady"},
    }
    (d / records.SOAK_SUMMARY_FILE).write_text(json.dumps(soak))
    return d


def test_two_soak_folders_compare_over_every_segment(tmp_path: Path) -> None:
    a = write_soak(tmp_path / "a", seed=1)
    b = write_soak(tmp_path / "b", seed=2, scale=1.2)
    data = build_compare(CompareSettings(baseline=a, candidate=b))
    assert data["a"]["kind"] == data["b"]["kind"] == "soak"
    p95 = row(data, "chat_p95_ms")
    assert p95["samples"] == [INTERVALS * PER_INTERVAL] * 2  # all three segments' intervals
    assert p95["verdict"] == "worse" and p95["difference"] > 0
    # errors came only in the first segment, which summary.json (the last segment) does not hold
    errors = row(data, "error_rate")
    assert (
        errors["a"] == pytest.approx(200 / (INTERVALS * PER_INTERVAL)) and errors["verdict"] == "within_noise"
    )
    same = build_compare(CompareSettings(baseline=a, candidate=write_soak(tmp_path / "c", seed=3)))
    assert row(same, "chat_p95_ms")["verdict"] == "within_noise" and same["exit_code"] == 0
