"""Every command line of the runbook and the README's command table, parsed verbatim through the real
argparse + settings path, so a change of settings library (or of a flag) cannot slip through.

The command lines below are copied as they are printed for the user (backslash continuations
included); the test splits them as a shell would. Environment variables are left out (``env={}``),
so only the flags decide.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from hif import chaos
from hif.harness.chaos.cli import build_parser as chaos_parser
from hif.harness.chaos.cli import fault_from_args
from hif.harness.load import cli as load_cli
from hif.harness.load.settings import LoadSettings
from hif.harness.report import cli as report_cli
from hif.harness.report.settings import ReportSettings
from hif.harness.soak import cli as soak_cli
from hif.harness.soak.runner import SoakSettings

# --- the runbook, section 1 (basic load test), as printed -----------------------------------
RUNBOOK_LOAD = """python -m tests.load.load_runner \\
  --base-url http://localhost:8080 \\
  --concurrency 500 \\
  --duration-seconds 600 \\
  --attach-rate 0.3 \\
  --granularity sentence \\
  --features sae-gpt4-2m \\
  --timeout-seconds 15"""
RUNBOOK_LOAD_ONE_LINE = (
    "python -m tests.load.load_runner --base-url http://localhost:8080 --concurrency 500 "
    "--duration-seconds 600 --attach-rate 0.3"
)
README_LOAD = (
    "python -m tests.load.load_runner --base-url http://localhost:8080 --concurrency 50 "
    "--duration-seconds 60 --attach-rate 0.3 --features sae-minilm-l6-res4-4k"
)
# The runbook's listed options (--auth-token, --tenant-id, --rps-limit, --granularity mix, --features),
# with the repeatable --slo and the boolean --append of docs/load.md.
LOAD_ALL_OPTIONS = (
    "python -m tests.load.load_runner --base-url http://localhost:8080 --auth-token TOKEN --tenant-id TID "
    "--rps-limit 200 --granularity mix --features sae-gpt4-2m --slo chat_p95_ms=500 --slo error_rate=0.01 "
    "--slo sentence_p95_ms=1500 --append --processes 2 --shard 2/3 --arrival poisson --live off"
)

# --- section 2 (soak) --------------------------------------------------------------------------
RUNBOOK_SOAK = """python -m tests.load.soak_runner \\
  --base-url http://localhost:8080 \\
  --hours 2 \\
  --profile spiky"""
RUNBOOK_SOAK_ONE_LINE = (
    "python -m tests.load.soak_runner --base-url http://localhost:8080 --hours 2 --profile spiky"
)
SOAK_RESUME = (
    "python -m tests.load.soak_runner --results-dir tests/load/results --resume --slo chat_p95_ms=400"
)

# --- section 3 (chaos) -------------------------------------------------------------------------
CHAOS_LINES: list[tuple[str, dict[str, object]]] = [
    (
        "python -m tests.chaos.chaos_injector --enable slow-sae --percent 50 --jitter-ms 150",
        {"flag": "slow-sae", "percent": 50.0, "jitter_ms": 150.0},
    ),
    (
        "python -m tests.chaos.chaos_injector --enable drop-s3 --percent 10",
        {"flag": "drop-s3", "percent": 10.0},
    ),
    (
        "python -m tests.chaos.chaos_injector --enable fail-attribution --percent 25 --mode fallback",
        {"flag": "fail-attribution", "percent": 25.0, "mode": "fallback"},
    ),
    (
        "python -m tests.chaos.chaos_injector --enable fail-attribution --percent 10 --mode fail",
        {"flag": "fail-attribution", "percent": 10.0, "mode": "fail"},
    ),
    (
        "python -m tests.chaos.chaos_injector --enable rate-limit-spike --severity hard",
        {"flag": "rate-limit-spike", "severity": "hard"},
    ),
    (
        "python -m tests.chaos.chaos_injector --enable rate-limit-spike --severity soft",
        {"flag": "rate-limit-spike", "severity": "soft"},
    ),
]
CHAOS_DISABLE = [
    ("python -m tests.chaos.chaos_injector --disable slow-sae", "slow-sae"),
    ("python -m tests.chaos.chaos_injector --disable drop-s3", "drop-s3"),
]
CHAOS_DISABLE_ALL = "python -m tests.chaos.chaos_injector --disable-all"

# --- section 4 (report) ------------------------------------------------------------------------
RUNBOOK_REPORT = "python -m tests.load.report --results-dir tests/load/results"
RUNBOOK_REPORT_METRICS = """python -m tests.load.report \\
  --results-dir tests/load/results \\
  --metrics-url-gateway http://localhost:9091/metrics \\
  --metrics-url-explainer http://localhost:9090/metrics"""
README_REPORT = (
    "python -m tests.load.report --results-dir tests/load/results --metrics-url-gateway "
    "http://localhost:9091/metrics --metrics-url-explainer http://localhost:9090/metrics"
)
REPORT_SHARDS = (
    "python -m tests.load.report --results-dir a b --results-dir c --out-dir merged --no-charts --jobs 2"
)


def argv(command: str, module: str) -> list[str]:
    """The arguments after ``python -m MODULE``, split as a POSIX shell splits the line."""
    words = shlex.split(command.replace("\\\n", " "))  # a backslash-newline continues the line
    assert words[:3] == ["python", "-m", module], words[:3]
    return words[3:]


def load_settings(command: str) -> LoadSettings:
    args = load_cli.parser().parse_args(argv(command, "tests.load.load_runner"))
    return load_cli.settings_from_args(args, env={})


def soak_settings(command: str) -> SoakSettings:
    args = soak_cli.parser().parse_args(argv(command, "tests.load.soak_runner"))
    return soak_cli.settings_from_args(args, env={})


def report_settings(command: str) -> ReportSettings:
    args = report_cli.build_parser().parse_args(argv(command, "tests.load.report"))
    return report_cli.settings_from_args(args, env={})


def test_runbook_load_command() -> None:
    s = load_settings(RUNBOOK_LOAD)
    assert (s.base_url, s.concurrency, s.duration_seconds, s.attach_rate) == (
        "http://localhost:8080",
        500,
        600.0,
        0.3,
    )
    assert (s.granularity, s.features, s.timeout_seconds) == ("sentence", "sae-gpt4-2m", 15.0)
    # everything not on the line keeps its documented default
    assert (s.rps_limit, s.auth_token, s.tenant_id, s.slo, s.append) == (0.0, None, None, (), False)
    assert s.results_dir == Path("tests/load/results")


def test_runbook_and_readme_one_line_load_commands() -> None:
    s = load_settings(RUNBOOK_LOAD_ONE_LINE)
    assert (s.concurrency, s.duration_seconds, s.attach_rate, s.granularity) == (500, 600.0, 0.3, "sentence")
    r = load_settings(README_LOAD)
    assert (r.concurrency, r.duration_seconds, r.features) == (50, 60.0, "sae-minilm-l6-res4-4k")


def test_every_load_option_of_the_runbook() -> None:
    s = load_settings(LOAD_ALL_OPTIONS)
    assert (s.auth_token, s.tenant_id, s.rps_limit, s.granularity) == ("TOKEN", "TID", 200.0, "mix")
    assert s.slo == ("chat_p95_ms=500", "error_rate=0.01", "sentence_p95_ms=1500")
    assert s.slos == {"chat_p95_ms": 500.0, "error_rate": 0.01, "sentence_p95_ms": 1500.0}
    assert (s.append, s.processes, s.shard, s.shard_index, s.arrival, s.live) == (
        True, 2, "2/3", (2, 3), "poisson", "off"
    )  # fmt: skip
    assert load_settings(LOAD_ALL_OPTIONS.replace("--append", "--no-append")).append is False


@pytest.mark.parametrize("command", [RUNBOOK_SOAK, RUNBOOK_SOAK_ONE_LINE])
def test_runbook_soak_commands(command: str) -> None:
    s = soak_settings(command)
    assert (s.base_url, s.hours, s.profile) == ("http://localhost:8080", 2.0, "spiky")
    assert (s.resume, s.segment_minutes, s.slo) == (False, 10.0, ())


def test_soak_resume_and_slo_override() -> None:
    s = soak_settings(SOAK_RESUME)
    assert (s.resume, s.results_dir) == (True, Path("tests/load/results"))
    assert s.slos["chat_p95_ms"] == 400.0 and s.slos["error_rate"] == 0.01


@pytest.mark.parametrize(("command", "fault"), CHAOS_LINES)
def test_runbook_chaos_enable_lines(command: str, fault: dict[str, object]) -> None:
    args = chaos_parser().parse_args(argv(command, "tests.chaos.chaos_injector"))
    got = fault_from_args(args, now=1000.0)
    assert isinstance(got, chaos.Fault)
    for key, value in fault.items():
        assert getattr(got, key) == value, key
    assert got.expires_at is None


@pytest.mark.parametrize(("command", "flag"), CHAOS_DISABLE)
def test_runbook_chaos_disable_lines(command: str, flag: str) -> None:
    args = chaos_parser().parse_args(argv(command, "tests.chaos.chaos_injector"))
    assert (args.disable, args.disable_all, args.enable, args.status) == (flag, False, None, False)


def test_runbook_chaos_disable_all() -> None:
    args = chaos_parser().parse_args(argv(CHAOS_DISABLE_ALL, "tests.chaos.chaos_injector"))
    assert (args.disable_all, args.disable, args.enable) == (True, None, None)


def test_runbook_report_commands() -> None:
    s = report_settings(RUNBOOK_REPORT)
    assert s.results_dirs == (Path("tests/load/results"),)
    assert (s.out_dir, s.metrics_url_gateway, s.metrics_url_explainer, s.jobs, s.charts) == (
        None,
        None,
        None,
        0,
        True,
    )
    for command in (RUNBOOK_REPORT_METRICS, README_REPORT):
        m = report_settings(command)
        assert m.results_dirs == (Path("tests/load/results"),)
        assert m.metrics_url_gateway == "http://localhost:9091/metrics"
        assert m.metrics_url_explainer == "http://localhost:9090/metrics"


def test_report_shards_and_boolean_flags() -> None:
    s = report_settings(REPORT_SHARDS)
    assert s.results_dirs == (Path("a"), Path("b"), Path("c"))
    assert (s.out_dir, s.charts, s.jobs) == (Path("merged"), False, 2)


def test_env_and_file_sit_below_the_flags(tmp_path: Path) -> None:
    """CLI > env > file > default, for the report as for the runners."""
    config = tmp_path / "hif.toml"
    config.write_text('[report]\njobs = 3\nmetrics_url_gateway = "http://file:1/metrics"\n')
    args = report_cli.build_parser().parse_args(["--results-dir", "r", "--config", str(config)])
    s = report_cli.settings_from_args(args, env={"HIF_METRICS_URL_GATEWAY": "http://env:2/metrics"})
    assert (s.jobs, s.metrics_url_gateway) == (3, "http://env:2/metrics")
    args = report_cli.build_parser().parse_args(
        ["--results-dir", "r", "--jobs", "4", "--config", str(config)]
    )
    assert report_cli.settings_from_args(args, env={}).jobs == 4
