"""The runbook's Quick command as pasted, and a report of one run's own server counters.

Both against ``hif serve``: the embedded system serves a small MiniLM featureset, not the runbook's
``sae-gpt4-2m``, so a run given no ``--features`` must fall back to the server's default and say so.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hif.harness import LoadSettings, run_load_sync
from hif.harness.records import METRICS_FILE, SUMMARY_FILE
from hif.harness.report.run import run_report
from hif.harness.report.settings import ReportSettings
from tests.conftest import wait_until
from tests.integration._procs import start
from tests.integration.conftest import EmbeddedSystem, start_system
from tests.schemas import validate_file, validate_results

pytestmark = pytest.mark.explainer

# The runbook's Quick load command, flag for flag (no --features).
QUICK = ("--concurrency", "500", "--duration-seconds", "600", "--attach-rate", "0.3")


def test_quick_command_verbatim_falls_back_and_exits_130_on_sigint(tmp_path: Path) -> None:
    with start_system(tmp_path / "serve", "--workers", "1") as system:
        out = tmp_path / "results"
        extra = ("--results-dir", str(out), "--live", "plain")
        extra += (
            "--metrics-url-gateway",
            system.metrics_url,
            "--metrics-url-explainer",
            system.explainer_metrics_url,
        )
        cmd = [sys.executable, "-m", "tests.load.load_runner", "--base-url", system.base_url, *QUICK, *extra]
        runner = start(cmd, name="quick", log_dir=tmp_path / "logs", split_output=True)
        runner.wait_log("hif load: elapsed=", timeout_s=60)  # load is flowing
        time.sleep(15)  # about 20 s of the runbook's load before the Ctrl-C, as a user would
        runner.signal(signal.SIGINT)
        rc = runner.wait(timeout_s=120)
        err = runner.stderr()
        assert rc == 130, runner.log()
        assert (
            f"hif: featureset sae-gpt4-2m (the default) is not served here; using the server's default "
            f"{system.featureset}; pass --features to choose" in err
        )
        summary = json.loads((out / SUMMARY_FILE).read_text())
        assert summary["stopped_by"] == "stop" and summary["chat"]["requests"] > 0
        assert summary["featureset"] == {
            "requested": "sae-gpt4-2m",
            "given": False,
            "used": system.featureset,
            "note": summary["featureset"]["note"],
        }
        assert summary["slo"]["pass"] is None  # not gated
        assert summary["metrics"]["scrapes"] >= 2 and not summary["metrics"]["errors"]
        assert validate_file(out / METRICS_FILE) >= 4  # both endpoints, at start and at the end
        validate_results(out)


def _load(system: EmbeddedSystem, out: Path, **kw: Any) -> dict[str, Any]:
    settings = LoadSettings(
        base_url=system.base_url,
        results_dir=out,
        live="off",
        metrics_url_gateway=system.metrics_url,
        metrics_url_explainer=system.explainer_metrics_url,
        poll_deadline_seconds=20,
        drain_seconds=25,
        **kw,
    )
    run_load_sync(settings)
    return run_report(ReportSettings(results_dirs=(out,), charts=False, chaos_path=system.chaos_path, jobs=1))


def _quiet(system: EmbeddedSystem) -> bool:
    level = system.metric("gateway_backpressure_level", system.metrics_url)
    return level == 0 and system.metric("explainer_queue_depth") == 0


def test_back_to_back_runs_report_their_own_counters(tmp_path: Path) -> None:
    # The runbook's budgets (1.5 s sentence, 3.5 s token) and one worker: token explanations for
    # every chat saturate the sidecar within seconds.
    with start_system(tmp_path / "serve", "--workers", "1") as system:
        heavy = _load(
            system,
            tmp_path / "heavy",
            concurrency=32,
            duration_seconds=20,
            attach_rate=1.0,
            granularity="token",
        )
        run = heavy["metrics"]["run"]
        assert run["ok"], run
        assert run["backpressure_by_level"].get("hard", 0) > 0, run
        assert heavy["chat"]["admissions"].get("shed", 0) > 0, heavy["chat"]["admissions"]
        assert heavy["explanations"]["states"].get("expired", 0) + run["jobs"].get("expired", 0) > 0, run
        # the heavy run's counters, as the gateway counted them, equal its own records
        assert run["admissions"].get("shed", 0) == heavy["chat"]["admissions"]["shed"]

        wait_until(lambda: _quiet(system), timeout_s=180, interval_s=1.0)
        light = _load(
            system,
            tmp_path / "light",
            concurrency=2,
            duration_seconds=10,
            rps_limit=3,  # about one explanation a second: well inside one worker's rate
            attach_rate=0.3,
            granularity="sentence",
        )
        run = light["metrics"]["run"]
        records_admissions = light["chat"]["admissions"]
        assert run["ok"], run
        # This run's sheds and admissions, not the server's lifetime (which holds the heavy run's).
        assert sum(run["backpressure_by_level"].values()) == 0 == records_admissions.get("shed", 0)
        assert run["admissions"].get("shed", 0) == 0
        assert run["admissions"].get("admitted", 0) == records_admissions.get("queued", 0) > 0
        states = light["explanations"]["states"]
        # Workers report a job to the supervisor's counter a tick after its trace turns complete, so
        # the run's last scrape may miss the very last one or two; never more, never extra ones.
        assert 0 <= states.get("complete", 0) - run["jobs"].get("complete", 0) <= 2, (run, states)
        assert states.get("complete", 0) > 0
        assert run["jobs"].get("expired", 0) == states.get("expired", 0) == 0, (run, states)
        assert light["metrics"]["explainer"]["now"] is True
        assert light["metrics"]["explainer"]["level_counts"]["hard"] > 0  # lifetime: the heavy run's
        md = (tmp_path / "light" / "report.md").read_text()
        assert "This run's server counters (increase between scrapes" in md and "**now**" in md
