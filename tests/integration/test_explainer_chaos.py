"""Each chaos flag at 100% on a running ``hif serve``: the trace status and the metric change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import wait_until
from tests.integration.conftest import RELAXED_SLA, EmbeddedSystem, start_system

pytestmark = pytest.mark.explainer


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSystem]:
    # TTL 15 s: ample for real work on a busy machine, short enough for the TTL test.
    flags = ("--workers", "1", *RELAXED_SLA, "--trace-ttl-s", "15", "--persist-retries", "2")
    with start_system(tmp_path_factory.mktemp("chaos"), *flags) as s:
        yield s


@pytest.fixture(autouse=True)
def calm_after(system: EmbeddedSystem) -> Iterator[None]:
    yield
    system.calm()


def _injections(system: EmbeddedSystem, flag: str) -> float:
    return system.metric("chaos_injections_total", flag=flag)


def test_drop_s3_fails_the_trace_after_retries(system: EmbeddedSystem) -> None:
    before, retries = _injections(system, "drop-s3"), system.metric("explainer_persist_retries_total")
    system.chaos("drop-s3", percent=100)
    body = system.wait_terminal(system.chat(granularity="sentence")["explanation"]["trace_id"])
    assert body["state"] == "failed" and body["error"].startswith("persist:"), body
    system.wait_metric("chaos_injections_total", before + 3, flag="drop-s3")  # first write + 2 retries
    system.wait_metric("explainer_persist_retries_total", retries + 2)
    assert system.metric("chaos_fault_active", flag="drop-s3") == 1


def test_fail_attribution_fallback_runs_the_heuristic(system: EmbeddedSystem) -> None:
    before = _injections(system, "fail-attribution")
    system.chaos("fail-attribution", percent=100, mode="fallback")
    body = system.wait_terminal(system.chat(granularity="token")["explanation"]["trace_id"])
    assert body["state"] == "complete" and body["attribution"] == "heuristic", body
    assert "attribution-fallback" in body["degraded"]
    # the graph says what the status says, and marks what the heuristic scored
    status, graph = system.request("GET", f"/v1/traces/{body['trace_id']}/graph")
    assert (
        status == 200 and graph["degraded"] == body["degraded"] and graph["attribution_method"] == "heuristic"
    )
    scored = [n for n in graph["nodes"] if n["feature_type"] in ("sae", "sae reconstruction error")]
    assert scored and all(n["hif_method"] == "heuristic" for n in scored)
    assert graph["metadata"]["scores"]["comparable_to_gradient"] is False
    system.wait_metric("chaos_injections_total", before + 1, flag="fail-attribution")


def test_fail_attribution_fail_marks_failed(system: EmbeddedSystem) -> None:
    system.chaos("fail-attribution", percent=100, mode="fail")
    body = system.wait_terminal(system.chat(granularity="sentence")["explanation"]["trace_id"])
    assert body["state"] == "failed" and "attribution" in body["error"], body


def test_slow_sae_adds_latency_before_decode(system: EmbeddedSystem) -> None:
    before = _injections(system, "slow-sae")
    system.chaos("slow-sae", percent=100, jitter_ms=400)
    body = system.wait_terminal(system.chat(granularity="sentence")["explanation"]["trace_id"])
    assert body["state"] == "complete" and body["stage_ms"]["decode"] >= 200, body
    system.wait_metric("chaos_injections_total", before + 1, flag="slow-sae")


def test_ttl_shorter_than_the_work_expires(system: EmbeddedSystem) -> None:
    system.chaos("slow-sae", percent=100, jitter_ms=60_000)
    body = system.wait_terminal(system.chat(granularity="token")["explanation"]["trace_id"], timeout_s=60)
    assert body["state"] == "expired" and body["reason"].startswith("ttl"), body
    status, _ = system.request("GET", f"/v1/traces/{body['trace_id']}/graph")
    assert status == 410


def test_rate_limit_spike_hard_sheds_and_soft_degrades(system: EmbeddedSystem) -> None:
    system.chaos("rate-limit-spike", severity="hard")
    wait_until(lambda: system.metric("backpressure_level") == 2, timeout_s=10)
    # The gateway re-reads the signal every 0.25 s: the next explain opt-ins are shed, chats answer.
    wait_until(lambda: system.chat(granularity="sentence")["explanation"]["state"] == "shed", timeout_s=10)
    system.wait_metric("chaos_injections_total", 1, flag="rate-limit-spike")
    system.chaos("rate-limit-spike", severity="soft")
    wait_until(lambda: system.metric("backpressure_level") == 1, timeout_s=10)
    wait_until(lambda: system.chat(granularity="token")["explanation"]["state"] == "queued", timeout_s=10)
    trace_id = system.chat(granularity="token")["explanation"]["trace_id"]
    body = system.wait_terminal(trace_id)
    assert body["state"] == "complete" and "reduce-topk" in body["degraded"], body
    system.wait_metric("backpressure_actions_total", 1, action="reduce-topk", level="soft")
    system.calm()
    wait_until(lambda: system.metric("backpressure_level") == 0, timeout_s=10)


def test_the_injector_sees_the_explainer_read_its_write(
    system: EmbeddedSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    from hif.harness.chaos.cli import main

    path = str(system.chaos_path)
    assert main(["--path", path, "--enable", "slow-sae", "--percent", "5", "--jitter-ms", "10"]) == 0
    assert "chaos: an explainer read it" in capsys.readouterr().out
    assert main(["--path", path, "--enable", "slow-sae", "--percent", "20", "--jitter-ms", "10"]) == 0
    assert "replaces slow-sae (percent=5, jitter_ms=10)" in capsys.readouterr().out
