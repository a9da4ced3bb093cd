"""hif/chaos.py: the control-file format, the Explainer's guarded reader, apply_change, the event log."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from hif import chaos
from hif.errors import HarnessError


def test_round_trip_and_activity() -> None:
    state = chaos.ChaosState(
        faults={
            "slow-sae": chaos.Fault(flag="slow-sae", percent=50, jitter_ms=150, expires_at=100.0),
            "drop-s3": chaos.Fault(flag="drop-s3", percent=10),
        },
        updated_at=5.0,
    )
    text = json.dumps(state.to_json())
    back = chaos.parse(text)
    assert back == state
    assert json.loads(text)["version"] == chaos.FORMAT_VERSION
    assert set(back.active(99.9)) == {"slow-sae", "drop-s3"}
    assert set(back.active(100.0)) == {"drop-s3"}  # expires_at is exclusive
    assert back.get("slow-sae", 101.0) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"flags": []}',
        '{"flags": {"slow-sae": [1]}}',
        '{"flags": {"nope": {}}}',
        '{"flags": {"drop-s3": {"percent": 150}}}',
        '{"flags": {"drop-s3": {"percent": "x"}}}',
        '{"flags": {}, "updated_at": "later"}',
    ],
)
def test_corrupt_files_raise_one_harness_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "chaos.json"
    path.write_text(text)
    with pytest.raises(HarnessError, match="is corrupt"):
        chaos.read_state(path)


def test_missing_file_means_no_chaos(tmp_path: Path) -> None:
    assert chaos.read_state(tmp_path / "absent.json").faults == {}
    assert chaos.ChaosReader(tmp_path / "absent.json").active() == {}


def test_hits_follow_percent() -> None:
    rng = random.Random(1)
    hits = sum(chaos.Fault(flag="drop-s3", percent=25).hits(rng) for _ in range(20_000))
    assert 4_600 < hits < 5_400
    assert not any(chaos.Fault(flag="drop-s3", percent=0).hits(rng) for _ in range(1000))
    assert all(chaos.Fault(flag="drop-s3", percent=100).hits(rng) for _ in range(1000))


def test_reader_sees_each_write_and_warns_once_per_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "chaos.json"
    reader = chaos.ChaosReader(path, min_interval_s=0.0)
    assert reader.active() == {}
    chaos.apply_change(enable=chaos.Fault(flag="drop-s3", percent=50), path=path)
    assert reader.active()["drop-s3"].percent == 50
    chaos.apply_change(enable=chaos.Fault(flag="drop-s3", percent=60), path=path)  # same size, new file
    assert reader.active()["drop-s3"].percent == 60
    with caplog.at_level(logging.WARNING, logger="hif.chaos"):
        path.write_text("{garbage")
        assert reader.active() == {}
        path.write_text("{garbage!")  # a new stamp, the same problem: no second warning
        assert reader.active() == {}
    assert len([r for r in caplog.records if "corrupt chaos control file" in r.message]) == 1
    chaos.apply_change(disable_all=True, path=path)
    assert reader.active() == {}
    path.unlink()
    assert reader.active() == {}


def test_reader_rereads_at_most_every_min_interval(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    reader = chaos.ChaosReader(path, min_interval_s=3600.0)
    assert reader.active() == {}
    chaos.apply_change(enable=chaos.Fault(flag="slow-sae"), path=path)
    assert reader.active() == {}  # cached: the worker does not stat the file per request


def test_apply_change_logs_every_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "chaos.json"
    log = tmp_path / "events" / "log.jsonl"
    log.parent.mkdir()
    monkeypatch.setenv("CHAOS_EVENT_LOG_PATH", str(log))
    chaos.apply_change(enable=chaos.Fault(flag="slow-sae", jitter_ms=5), path=path, now=10.0)
    chaos.apply_change(enable=chaos.Fault(flag="drop-s3", expires_at=25.0), path=path, now=20.0)
    state = chaos.apply_change(disable="slow-sae", path=path, now=30.0)
    assert state.faults == {}  # drop-s3 expired at 25: dropped on the next write
    events = chaos.read_events(log)
    assert [(e["ts"], e["action"], e["flag"]) for e in events] == [
        (10.0, "enable", "slow-sae"),
        (20.0, "enable", "drop-s3"),
        (30.0, "disable", "slow-sae"),
    ]
    assert events[0]["params"]["jitter_ms"] == 5 and events[0]["params"]["enabled_at"] == 10.0
    with open(log, "a") as fh:
        fh.write("torn {\n[1]\n")
    assert len(chaos.read_events(log)) == 3


def test_disable_all_rewrites_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    path.write_text("not json")
    with pytest.raises(HarnessError):
        chaos.apply_change(disable="slow-sae", path=path)
    chaos.apply_change(disable_all=True, path=path)
    assert chaos.read_state(path).faults == {}
    with pytest.raises(HarnessError, match="unknown chaos flag"):
        chaos.apply_change(disable="nope", path=path)
