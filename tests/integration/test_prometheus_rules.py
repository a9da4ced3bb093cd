"""promtool accepts the shipped config and rules, and the burn-rate alerts fire when they should.

``promtool test rules`` replays synthetic series through the real rule engine: a burning SLI must
page (fast burn) and open a ticket (slow burn); a healthy one must stay silent.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration._procs import require_tool

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
RULES = DEPLOY / "rules.yml"
CHAT = 'route="/v1/chat/completions",method="POST",tenant="alpha"'
STEPS = "x180"  # three hours of one-minute samples


def promtool() -> str:
    return require_tool("promtool", "prometheus")


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def alert_rule(name: str) -> dict[str, Any]:
    rules = yaml.safe_load(RULES.read_text())
    return next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name)


def expect(name: str, eval_time: str, *, firing: bool, extra_labels: dict[str, str] | None = None) -> dict:
    rule = alert_rule(name)
    alerts = []
    if firing:
        labels = {**rule["labels"], **(extra_labels or {})}
        alerts = [{"exp_labels": labels, "exp_annotations": rule["annotations"]}]
    return {"eval_time": eval_time, "alertname": name, "exp_alerts": alerts}


def series(name: str, labels: str, per_minute: float) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": f"0+{per_minute}{STEPS}"}


def test_config_and_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "config", "prometheus.yml", cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_promtool("check", "rules", "rules.yml", cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def burning_case() -> dict[str, Any]:
    """Half the chats fail, 90% are slow, half the jobs fail, 90% of sentence jobs miss 1.5 s."""
    sentence = 'granularity="sentence",state="complete"'
    token = 'granularity="token",state="complete"'
    return {
        "interval": "1m",
        "input_series": [
            series("gateway_requests_total", f'{CHAT},status="200"', 60),
            series("gateway_requests_total", f'{CHAT},status="500"', 60),
            series("gateway_request_duration_seconds_bucket", f'{CHAT},status="200",le="0.5"', 12),
            series("gateway_request_duration_seconds_count", f'{CHAT},status="200"', 120),
            series("explainer_jobs_total", 'state="complete"', 10),
            series("explainer_jobs_total", 'state="failed"', 10),
            series("explainer_job_duration_seconds_bucket", f'{sentence},le="1.5"', 1),
            series("explainer_job_duration_seconds_count", sentence, 10),
            series("explainer_job_duration_seconds_bucket", f'{token},le="3.5"', 10),
            series("explainer_job_duration_seconds_count", token, 10),
            {"series": 'up{job="hif-explainer",instance="localhost:9090"}', "values": "0x30"},
        ],
        "alert_rule_test": [
            expect("HifChatErrorsBudgetBurnFast", "20m", firing=True),
            expect("HifChatLatencyBudgetBurnFast", "20m", firing=True),
            expect("HifExplanationExpiredFailedBudgetBurnFast", "20m", firing=True),
            expect("HifSentenceSlaBudgetBurnFast", "20m", firing=True),
            expect("HifSentenceSlaBudgetBurnSlow", "40m", firing=True),
            expect("HifTokenSlaBudgetBurnFast", "20m", firing=False),
            expect("HifTokenSlaBudgetBurnSlow", "40m", firing=False),
            expect(
                "HifTargetDown",
                "5m",
                firing=True,
                extra_labels={"job": "hif-explainer", "instance": "localhost:9090"},
            ),
        ],
    }


def healthy_case() -> dict[str, Any]:
    """All chats 200 and fast, every job complete within budget: nothing fires."""
    return {
        "interval": "1m",
        "input_series": [
            series("gateway_requests_total", f'{CHAT},status="200"', 60),
            series("gateway_request_duration_seconds_bucket", f'{CHAT},status="200",le="0.5"', 60),
            series("gateway_request_duration_seconds_count", f'{CHAT},status="200"', 60),
            series("explainer_jobs_total", 'state="complete"', 10),
        ],
        "alert_rule_test": [
            expect(name, "40m", firing=False)
            for name in (
                "HifChatErrorsBudgetBurnFast",
                "HifChatErrorsBudgetBurnSlow",
                "HifChatLatencyBudgetBurnFast",
                "HifExplanationExpiredFailedBudgetBurnSlow",
            )
        ],
    }


def test_burn_rate_alerts_fire_on_burning_slis_only(tmp_path: Path) -> None:
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "30s",
        "tests": [burning_case(), healthy_case()],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run_promtool("test", "rules", str(test_file), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
