"""hif/chaos.py: the file format and its validation, the guarded reader, apply_change, the event log."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
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
    ("text", "problem"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("[]", "holds a JSON list, not an object"),
        ("null", "holds a JSON NoneType, not an object"),
        ('{"flags": []}', "'flags' must be an object"),
        ("\xff\xfe{", "not valid JSON"),
        ("[" * 50_000, "not valid JSON"),  # json's recursion limit, not a crash
    ],
)
def test_a_file_that_is_not_a_json_object_is_no_chaos(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "chaos.json"
    path.write_bytes(text.encode("latin-1"))
    state = chaos.read_state(path)
    assert state.faults == {} and state.active() == {}
    assert state.problem is not None and problem in state.problem


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"percent": 100, "expires_at": "never"}, "expires_at must be a finite number, got 'never'"),
        ({"percent": 150}, "percent must be within 0..100"),
        ({"percent": "x"}, "percent must be a finite number"),
        ({"percent": True}, "percent must be a finite number"),
        ({"percent": float("nan")}, "percent must be a finite number"),
        ({"jitter_ms": float("nan")}, "jitter_ms must be a finite number, got nan"),
        ({"jitter_ms": float("inf")}, "jitter_ms must be a finite number"),
        ({"jitter_ms": -1}, "jitter_ms must be >= 0"),
        ({"mode": "explode"}, "mode must be one of fallback, fail"),
        ({"severity": 1}, "severity must be one of soft, hard"),
        ({"enabled_at": None}, "enabled_at must be a finite number"),
        ({"expires_at": 10**400}, "expires_at must be a finite number"),
        ([1], "must map to an object"),
    ],
)
def test_a_flag_with_an_invalid_field_is_inactive_and_the_others_stay(
    tmp_path: Path, spec: object, reason: str
) -> None:
    path = tmp_path / "chaos.json"
    path.write_text(json.dumps({"version": 1, "flags": {"drop-s3": spec, "slow-sae": {"jitter_ms": 5}}}))
    state = chaos.read_state(path)
    assert set(state.active()) == {"slow-sae"} and state.active()["slow-sae"].jitter_ms == 5.0
    assert reason in state.invalid["drop-s3"] and state.problem is None
    assert isinstance(state.active(float("nan")), dict)  # a bad clock is the wall clock, never a raise
    assert chaos.ChaosReader(path).active() == state.active()


def test_unknown_flags_and_fields_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    path.write_text(
        json.dumps(
            {
                "version": 2,
                "owner": "newer injector",
                "updated_at": "later",
                "flags": {"melt-gpu": {"percent": 5}, "drop-s3": {"percent": 10, "burst": 3}},
            }
        )
    )
    state = chaos.read_state(path)
    assert state.active()["drop-s3"].percent == 10.0 and state.invalid == {}
    assert set(state.ignored) == {
        "unknown field 'owner'",
        "invalid updated_at 'later'",
        "unknown flag 'melt-gpu'",
        "unknown field drop-s3.burst",
    }


def test_a_symlink_to_a_device_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    path.symlink_to("/dev/zero")
    state = chaos.read_state(path)
    assert state.faults == {} and state.problem == "not a regular file"
    assert chaos.ChaosReader(path).active() == {}


def test_a_fifo_does_not_block_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    os.mkfifo(path)
    got: list[chaos.ChaosState] = []
    reader = threading.Thread(target=lambda: got.append(chaos.read_state(path)), daemon=True)
    reader.start()
    reader.join(5.0)
    if reader.is_alive():  # unblock the thread (a writer end lets its open/read return) before failing
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert got[0].faults == {} and got[0].problem == "not a regular file"


def test_a_file_over_64_kib_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    valid = {"version": 1, "flags": {"drop-s3": {"percent": 10}}}
    path.write_text(json.dumps(valid) + " " * (chaos.MAX_FILE_BYTES - 100))
    assert "drop-s3" in chaos.read_state(path).active()  # just under the cap: read
    path.write_text(json.dumps(valid) + " " * chaos.MAX_FILE_BYTES)
    state = chaos.read_state(path)
    assert state.faults == {} and state.problem == f"larger than {chaos.MAX_FILE_BYTES} bytes"


def test_apply_change_rewrites_an_invalid_file_valid_naming_what_it_dropped(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    bad = {"percent": 100, "expires_at": "never"}
    path.write_text(json.dumps({"flags": {"drop-s3": bad, "slow-sae": {"jitter_ms": 5}, "x": {}}}))
    change = chaos.apply_change(enable=chaos.Fault(flag="rate-limit-spike"), path=path)
    assert change.dropped == (
        "invalid flag drop-s3 (expires_at must be a finite number, got 'never')",
        "unknown flag 'x'",
    )
    again = chaos.read_state(path)
    assert set(again.active()) == {"slow-sae", "rate-limit-spike"} and again.problems() == []
    path.write_text("not json")
    change = chaos.apply_change(disable="slow-sae", path=path)
    assert change.dropped[0].startswith("the unreadable content (not valid JSON")
    assert chaos.read_state(path).problems() == []


def test_fault_rejects_what_the_file_would_reject() -> None:
    with pytest.raises(HarnessError, match="--jitter-ms must be a finite number, got nan"):
        chaos.Fault(flag="slow-sae", jitter_ms=float("nan"))
    with pytest.raises(HarnessError, match="--expires-at must be a finite number"):
        chaos.Fault(flag="slow-sae", expires_at="never")  # type: ignore[arg-type]
    assert chaos.Fault(flag="drop-s3", percent=50).percent.__class__ is float


def test_missing_file_means_no_chaos(tmp_path: Path) -> None:
    assert chaos.read_state(tmp_path / "absent.json").faults == {}
    assert chaos.ChaosReader(tmp_path / "absent.json").active() == {}


def test_hits_follow_percent() -> None:
    rng = random.Random(1)
    hits = sum(chaos.Fault(flag="drop-s3", percent=25).hits(rng) for _ in range(20_000))
    assert 4_600 < hits < 5_400
    assert not any(chaos.Fault(flag="drop-s3", percent=0).hits(rng) for _ in range(1000))
    assert all(chaos.Fault(flag="drop-s3", percent=100).hits(rng) for _ in range(1000))


def test_reader_sees_each_write_and_warns_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "chaos.json"
    reader = chaos.ChaosReader(path, min_interval_s=0.0)
    assert reader.active() == {}
    chaos.apply_change(enable=chaos.Fault(flag="drop-s3", percent=50), path=path)
    assert reader.active()["drop-s3"].percent == 50
    chaos.apply_change(enable=chaos.Fault(flag="drop-s3", percent=60), path=path)  # same size, new file
    assert reader.active()["drop-s3"].percent == 60

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "hif.chaos"]

    bad = '{"flags": {"drop-s3": {"expires_at": "never"}, "slow-sae": {}, "x": {}}}'
    with caplog.at_level(logging.WARNING, logger="hif.chaos"):
        path.write_text(bad)
        assert set(reader.active()) == {"slow-sae"}
        assert set(chaos.read_state(path).active()) == {"slow-sae"}  # another path, the same change
        os.utime(path, (1, 1))  # touched, not changed: a new stamp, the same content
        assert set(reader.active()) == {"slow-sae"}
        assert len(warnings()) == 1
        assert "invalid flag drop-s3 (expires_at must be a finite number" in warnings()[0]
        assert "ignored unknown flag 'x'" in warnings()[0]
        path.write_text("{garbage")  # a change: one more warning
        assert reader.active() == {} and chaos.read_state(path).active() == {}
        assert len(warnings()) == 2 and "not valid JSON" in warnings()[1]
        path.write_text(bad)  # back again is a change too
        assert set(reader.active()) == {"slow-sae"}
        assert len(warnings()) == 3
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
    change = chaos.apply_change(disable="slow-sae", path=path, now=30.0)
    assert (
        change.state.faults == {} and change.dropped == ()
    )  # drop-s3 expired at 25: dropped on the next write
    events = chaos.read_events(log)
    assert [(e["ts"], e["action"], e["flag"]) for e in events] == [
        (10.0, "enable", "slow-sae"),
        (20.0, "enable", "drop-s3"),
        (30.0, "disable", "slow-sae"),
    ]
    assert events[0]["params"]["jitter_ms"] == 5 and events[0]["params"]["enabled_at"] == 10.0
    with open(log, "a") as fh:
        fh.write("torn {\n[1]\n" + "[" * 50_000 + "\n")
        fh.write('{"ts": "soon", "action": "enable", "flag": "drop-s3"}\n{"ts": NaN, "action": "enable"}\n')
        fh.write(
            '{"ts": 40, "action": "enable", "flag": "drop-s3", "params": [1]}\n{"ts": 41, "action": 7}\n'
        )
    assert len(chaos.read_events(log)) == 3  # only well-formed events reach the report's replay


def test_an_event_log_that_is_not_a_regular_file_reads_as_empty(tmp_path: Path) -> None:
    fifo = tmp_path / "events.jsonl"
    os.mkfifo(fifo)
    got: list[list[dict[str, object]]] = []
    reader = threading.Thread(target=lambda: got.append(chaos.read_events(fifo)), daemon=True)
    reader.start()
    reader.join(5.0)
    if reader.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO event log blocked")
    assert got == [[]]
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    assert chaos.read_events(tmp_path / "zero.jsonl") == []


def test_disable_all_rewrites_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    path.write_text("not json")
    chaos.apply_change(disable_all=True, path=path)
    state = chaos.read_state(path)
    assert state.faults == {} and state.problems() == []
    with pytest.raises(HarnessError, match="unknown chaos flag"):
        chaos.apply_change(disable="nope", path=path)
