"""One verdict: the runner, summary.json, the report and the exit code agree, with and without gates."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hif.harness.records import REPORT_JSON_FILE, REPORT_MD_FILE, SUMMARY_FILE
from tests.conftest import free_port
from tests.integration._procs import hif_cmd, http_ready, running, start


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, data = free_port(), tmp_path_factory.mktemp("gateway")
    url = f"http://127.0.0.1:{port}"
    cmd = hif_cmd("gateway", "--port", str(port), "--metrics-port", "0", "--data-dir", str(data))
    with running(cmd, name="gateway", log_dir=data, ready=http_ready(f"{url}/healthz")):
        yield url


def _load(gateway: str, out: Path, *slo: str) -> tuple[int, dict[str, Any], str]:
    gates = [a for s in slo for a in ("--slo", s)]
    args = ["--base-url", gateway, "--concurrency", "4", "--duration-seconds", "2", "--live", "off"]
    args += ["--results-dir", str(out), "--metrics-url-gateway", "off", "--metrics-url-explainer", "off"]
    cmd = [sys.executable, "-m", "tests.load.load_runner", *args, *gates]
    proc = start(cmd, name="load", log_dir=out / "logs", split_output=True)
    rc = proc.wait(timeout_s=60)
    line = json.loads(proc.stdout().strip().splitlines()[-1])
    return rc, line, proc.log()


def _report(out: Path) -> tuple[dict[str, Any], str]:
    cmd = hif_cmd("report", "--results-dir", str(out), "--no-charts")
    proc = start(cmd, name="report", log_dir=out / "logs")
    assert proc.wait(timeout_s=120) == 0, proc.log()
    return json.loads((out / REPORT_JSON_FILE).read_text()), (out / REPORT_MD_FILE).read_text()


def test_no_gates_is_not_gated_everywhere(gateway: str, tmp_path: Path) -> None:
    rc, line, log = _load(gateway, tmp_path)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert rc == 0 and line["slo_pass"] is None and summary["slo"]["pass"] is None, log
    assert "not gated" in log
    # No explanations were asked for: no token percentile, null rather than a 0.0 that reads as fast.
    assert line["token_p95_ms"] is None and summary["explanations"]["sla_ms"]["token"]["p95_ms"] is None
    assert {g["name"] for g in summary["slo"]["reference"]} >= {"chat_p95_ms", "token_p95_ms"}
    report, md = _report(tmp_path)
    assert report["slo"]["pass"] is None and report["slo"]["gates"] == []
    assert "**not gated**" in md and "a gate failed" not in md and "not gated)" in md


@pytest.mark.parametrize(("limit", "rc", "verdict"), [("0.001", 1, False), ("100000", 0, True)])
def test_a_gate_decides_runner_summary_report_and_exit_code(
    gateway: str, tmp_path: Path, limit: str, rc: int, verdict: bool
) -> None:
    got_rc, line, log = _load(gateway, tmp_path, f"chat_p95_ms={limit}", "token_p95_ms=1")
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert got_rc == rc == summary["exit_code"], log
    assert line["slo_pass"] is verdict and summary["slo"]["pass"] is verdict
    token = next(g for g in summary["slo"]["gates"] if g["name"] == "token_p95_ms")
    assert token["value"] is None and token["pass"] is None  # no data: neither pass nor fail
    report, md = _report(tmp_path)
    assert report["slo"]["pass"] is verdict
    assert ("**a gate failed**" in md) is (not verdict) and ("all gates pass" in md) is verdict
