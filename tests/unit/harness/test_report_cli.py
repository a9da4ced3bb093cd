"""`hif report` and the runbook entry points (module and script forms) for report and chaos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hif.harness.records import CHAT_FILE
from hif.harness.report.cli import main
from tests.schemas import validate_file

ROOT = Path(__file__).resolve().parents[3]


def _results(d: Path, n: int = 50) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / CHAT_FILE).write_text(
        "".join(json.dumps({"ts": 1e9 + i, "status": 200, "latency_ms": 1.0 + i}) + "\n" for i in range(n))
    )
    return d


def test_cli_writes_files_and_prints_one_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    out = tmp_path / "merged"
    assert (
        main(
            [
                "--results-dir",
                str(a),
                str(b),
                "--out-dir",
                str(out),
                "--no-charts",
                "--chaos-path",
                str(tmp_path / "c.json"),
            ]
        )
        == 0
    )
    line = json.loads(capsys.readouterr().out)
    assert line["chat_requests"] == 100 and line["report_md"] == str(out / "report.md")
    assert (out / "report.json").exists() and (out / "report.md").exists()
    validate_file(out / "report.json")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--results-dir", "/nonexistent/dir"], "results dir /nonexistent/dir does not exist"),
        (["--results-dir", ".", "--jobs", "-1"], "jobs: must be >= 0"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hif: ") and message in err and err.count("\n") == 1


def test_results_dir_defaults_to_where_the_runner_writes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert "results dir tests/load/results does not exist" in capsys.readouterr().err


def _run(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_runbook_entry_points_as_module_and_script(tmp_path: Path) -> None:
    env = {"CHAOS_CONTROL_PATH": str(tmp_path / "chaos.json")}
    r = _run(
        ["-m", "tests.chaos.chaos_injector", "--enable", "slow-sae", "--percent", "50", "--jitter-ms", "150"],
        env,
    )
    assert r.returncode == 0, r.stderr
    r = _run(["tests/chaos/chaos_injector.py", "--status"], env)
    assert r.returncode == 0 and r.stdout.startswith("slow-sae (percent=50, jitter_ms=150)"), r.stderr
    r = _run(["tests/chaos/chaos_injector.py", "--enable", "nope"], env)
    assert r.returncode == 2 and r.stderr.startswith("hif: unknown chaos flag")
    d = _results(tmp_path / "results")
    r = _run(["-m", "tests.load.report", "--results-dir", str(d), "--no-charts"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["chat_requests"] == 50
    r = _run(["tests/load/report.py", "--results-dir", str(d), "--no-charts"], env)
    assert r.returncode == 0, r.stderr
    assert "Active now" in (d / "report.md").read_text()
