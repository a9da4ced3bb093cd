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
