"""The supervisor's tick without processes: sweeping, backpressure publishing, event application."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hif.chaos import ChaosReader, Fault, apply_change
from hif.explainer.service.events import READY
from hif.explainer.service.supervisor import Supervisor
from hif.explainer.settings import ExplainerSettings, FeaturesetSettings, SlaSettings
from hif.store import open_stores
from hif.store.base import TraceState
from hif.store.settings import StoreSettings
from tests._records import make_job, make_record


@pytest.fixture
def sup(tmp_path: Path) -> Supervisor:
    s = Supervisor(
        ExplainerSettings(soft_depth=2, hard_depth=4),
        SlaSettings(),
        StoreSettings(data_dir=tmp_path),
        FeaturesetSettings(),
        registry=CollectorRegistry(),
    )
    s.stores = open_stores(s.store_settings)
    s.chaos = ChaosReader(tmp_path / "chaos.json", min_interval_s=0.0)
    return s


def add(sup: Supervisor, trace_id: str, *, state: TraceState = TraceState.QUEUED, ttl_s: float = 60) -> None:
    assert sup.stores is not None
    now = time.time()
    sup.stores.state.create(
        [
            make_record(
                trace_id,
                tenant="a",
                state=state,
                granularity_requested="sentence",
                features_requested="f",
                features_resolved="f",
                created_at=now,
                expires_at=now + ttl_s,
            )
        ]
    )
    if state is TraceState.QUEUED:
        sup.stores.queue.enqueue(
            [make_job(trace_id, tenant="a", featureset="f", created_at=now, ttl_s=ttl_s)]
        )


def value(sup: Supervisor, name: str, **labels: str) -> float:
    return sup.metrics.registry.get_sample_value(name, labels) or 0.0


def test_tick_sweeps_expired_and_publishes_only_once_ready(sup: Supervisor) -> None:
    assert sup.stores is not None
    add(sup, "old", ttl_s=-1)
    sup.tick()
    old = sup.stores.state.get("old")
    assert old is not None and old.state is TraceState.EXPIRED
    assert value(sup, "explainer_jobs_total", state="expired") == 1
    assert sup.stores.state.read_backpressure() is None  # no worker ready: no heartbeat yet
    sup.events.put((READY, "set", 0.0, ()))
    sup.events.put(("jobs", "inc", 2.0, (("state", "complete"),)))
    time.sleep(0.2)  # the multiprocessing queue's feeder thread delivers asynchronously
    sup.tick()
    assert value(sup, "explainer_jobs_total", state="complete") == 2
    signal = sup.stores.state.read_backpressure()
    assert signal is not None and time.time() - signal.updated_at < 5


def test_depth_and_chaos_spike_set_the_level_and_shed_is_counted(sup: Supervisor, tmp_path: Path) -> None:
    for i in range(3):
        add(sup, f"q{i}")
    sup.tick()
    assert value(sup, "backpressure_level") == 1 and value(sup, "explainer_queue_depth") == 3
    apply_change(enable=Fault(flag="rate-limit-spike", severity="hard"), path=tmp_path / "chaos.json")
    add(sup, "s1", state=TraceState.SHED)
    sup.tick()
    assert value(sup, "backpressure_level") == 2
    assert value(sup, "chaos_fault_active", flag="rate-limit-spike") == 1
    assert value(sup, "chaos_injections_total", flag="rate-limit-spike") == 1
    add(sup, "s2", state=TraceState.SHED)
    sup.tick()
    assert value(sup, "backpressure_actions_total", action="shed", level="hard") == 2  # s1 and s2


def test_a_malformed_chaos_file_does_not_stop_the_heartbeat(sup: Supervisor, tmp_path: Path) -> None:
    assert sup.stores is not None
    (tmp_path / "chaos.json").write_text(
        '{"version": 1, "flags": {"rate-limit-spike": {"severity": "hard", "expires_at": "never"}}}'
    )
    sup.events.put((READY, "set", 0.0, ()))
    time.sleep(0.2)  # the multiprocessing queue's feeder thread delivers asynchronously
    sup.tick()
    signal = sup.stores.state.read_backpressure()
    assert signal is not None and int(signal.level) == 0  # published, and the invalid spike is inactive
    assert value(sup, "chaos_fault_active", flag="rate-limit-spike") == 0
