"""The load runner against the real gateway (``hif gateway``) and the embedded system (``hif serve``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hif.errors import PreflightError
from hif.harness import LoadSettings, records, run_load_sync
from tests.conftest import free_port
from tests.integration._procs import hif_cmd, http_ready, running
from tests.integration.conftest import EmbeddedSystem
from tests.schemas import validate_results


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, data = free_port(), tmp_path_factory.mktemp("gateway")
    url = f"http://127.0.0.1:{port}"
    cmd = hif_cmd("gateway", "--port", str(port), "--metrics-port", "0", "--data-dir", str(data))
    with running(cmd, name="gateway", log_dir=data, ready=http_ready(f"{url}/healthz")):
        yield url


def test_chat_load_against_the_gateway(gateway: str, tmp_path: Path) -> None:
    settings = LoadSettings(
        base_url=gateway,
        concurrency=8,
        duration_seconds=2,
        results_dir=tmp_path,
        live="off",
        tenant_id="alpha",
    )
    summary = run_load_sync(settings)
    validate_results(tmp_path)
    chat = summary.data["chat"]
    assert chat["requests"] > 20 and chat["error_rate"] == 0.0, chat["by_status"]
    assert chat["by_status"] == {"200": chat["requests"]}
    assert chat["latency_ms"]["p50_ms"] > 0
    with open(tmp_path / records.CHAT_FILE) as fh:
        first = json.loads(fh.readline())
    assert first["tenant"] == "alpha" and first["status"] == 200


def test_preflight_names_what_the_gateway_serves(gateway: str, tmp_path: Path) -> None:
    settings = LoadSettings(
        base_url=gateway, attach_rate=0.3, features="no-such-featureset", results_dir=tmp_path, live="off"
    )
    with pytest.raises(PreflightError, match=r"'no-such-featureset' is not served by .*; served: "):
        run_load_sync(settings)
    assert not (tmp_path / records.CHAT_FILE).exists()


@pytest.mark.explainer
def test_every_attached_trace_is_accounted_for(embedded_system: EmbeddedSystem, tmp_path: Path) -> None:
    settings = LoadSettings(
        base_url=embedded_system.base_url,
        concurrency=2,
        duration_seconds=3,
        attach_rate=0.5,
        granularity="mix",
        features=embedded_system.featureset,
        results_dir=tmp_path,
        live="off",
        poll_deadline_seconds=45,
        drain_seconds=50,
    )
    summary = run_load_sync(settings)
    validate_results(tmp_path)
    expl = summary.data["explanations"]
    assert summary.data["chat"]["error_rate"] == 0.0
    assert expl["attached"] == expl["traces"] > 0
    assert expl["by_state"]["orphaned"] == 0, expl["by_state"]
    assert sum(expl["by_state"][s] for s in ("complete", "failed", "expired", "shed")) == expl["traces"]


def test_streamed_load_against_the_gateway_counts_tokens_as_the_simulator_does(
    gateway: str, tmp_path: Path
) -> None:
    settings = LoadSettings(
        base_url=gateway,
        concurrency=4,
        duration_seconds=2,
        results_dir=tmp_path,
        live="off",
        stream=True,
        dataset="chat_small",
        attach_rate=0.5,
        features="sae-minilm-l6-res4-4k",
        poll_deadline_seconds=1,
        drain_seconds=0,
    )
    summary = run_load_sync(settings)
    validate_results(tmp_path)
    chat = summary.data["chat"]
    assert chat["requests"] > 4 and chat["error_rate"] == 0.0, chat["by_status"]
    stream = chat["stream"]
    # The simulator counts usage with the harness's tokenizer: no mismatch, every stream compared.
    assert stream["usage_compared"] == stream["streams"] == chat["requests"]
    assert stream["usage_mismatch_rate"] == 0.0 and stream["ttft_ms"]["count"] == chat["requests"]
    lines = [json.loads(x) for x in (tmp_path / records.CHAT_FILE).read_text().splitlines()]
    attached = [r for r in lines if r["attached"]]
    assert attached and all(r["trace_id"] for r in attached)  # the trace id arrived in the stream
    # The server counts its rendering of the messages ("user: ..."), a little more than the text.
    assert all(0 < r["prompt_tokens_local"] <= r["prompt_tokens_server"] for r in lines)
