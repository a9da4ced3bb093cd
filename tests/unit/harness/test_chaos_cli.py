"""`hif chaos` / tests.chaos.chaos_injector: the runbook's flags, TTL, status, bad input, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from hif import chaos
from hif.harness.chaos.cli import main


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hif" / "chaos.json"
    monkeypatch.setenv("CHAOS_CONTROL_PATH", str(path))
    monkeypatch.delenv("CHAOS_EVENT_LOG_PATH", raising=False)
    return path


def _flags(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text())["flags"]


def test_runbook_commands(control: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--enable", "slow-sae", "--percent", "50", "--jitter-ms", "150"]) == 0
    assert main(["--enable", "drop-s3", "--percent", "10"]) == 0
    assert main(["--enable", "fail-attribution", "--percent", "25", "--mode", "fallback"]) == 0
    assert main(["--enable", "rate-limit-spike", "--severity", "soft"]) == 0
    flags = _flags(control)
    assert (flags["slow-sae"]["percent"], flags["slow-sae"]["jitter_ms"]) == (50.0, 150.0)
    assert flags["drop-s3"]["percent"] == 10.0
    assert (flags["fail-attribution"]["percent"], flags["fail-attribution"]["mode"]) == (25.0, "fallback")
    assert (flags["rate-limit-spike"]["severity"], flags["rate-limit-spike"]["percent"]) == ("soft", 100.0)
    assert main(["--enable", "fail-attribution", "--percent", "10", "--mode", "fail"]) == 0
    assert _flags(control)["fail-attribution"]["mode"] == "fail"
    assert main(["--disable", "slow-sae"]) == 0
    assert "slow-sae" not in _flags(control)
    assert main(["--disable-all"]) == 0
    assert _flags(control) == {}
    out = capsys.readouterr().out
    assert "chaos: enabled slow-sae (percent=50, jitter_ms=150)" in out and "all flags disabled" in out
    actions = [(e["action"], e["flag"]) for e in chaos.read_events(control.with_name("chaos_events.jsonl"))]
    assert actions[0] == ("enable", "slow-sae") and actions[-2:] == [
        ("disable", "slow-sae"),
        ("disable-all", None),
    ]


def test_status_lists_active_flags(control: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--status"]) == 0
    assert "no chaos flags active" in capsys.readouterr().out
    main(["--enable", "rate-limit-spike", "--severity", "hard", "--ttl-seconds", "60"])
    capsys.readouterr()
    assert main(["--status"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("rate-limit-spike (percent=100, severity=hard, expires in ")
    assert main(["--status", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert list(got["flags"]) == ["rate-limit-spike"] and got["path"] == str(control)


def test_ttl_flag_expires_by_itself(control: Path) -> None:
    before = time.time()
    assert main(["--enable", "drop-s3", "--percent", "10", "--ttl-seconds", "30"]) == 0
    fault = chaos.read_state(control).faults["drop-s3"]
    assert fault.expires_at is not None and before + 30 <= fault.expires_at <= time.time() + 30
    assert "drop-s3" in chaos.read_state(control).active(before + 29)
    assert chaos.read_state(control).active(fault.expires_at) == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--enable", "bogus"], "unknown chaos flag 'bogus'"),
        (["--enable", "drop-s3", "--percent", "120"], "--percent must be within 0..100"),
        (["--enable", "drop-s3", "--percent", "-1"], "--percent must be within 0..100"),
        (["--enable", "drop-s3", "--percent", "ten"], "invalid float value"),
        (["--enable", "drop-s3", "--mode", "fail"], "--mode only applies to fail-attribution"),
        (["--enable", "slow-sae", "--severity", "hard"], "--severity only applies to rate-limit-spike"),
        (["--enable", "drop-s3", "--jitter-ms", "5"], "--jitter-ms only applies to slow-sae"),
        (["--enable", "fail-attribution", "--mode", "explode"], "--mode must be one of fallback, fail"),
        (["--enable", "rate-limit-spike", "--severity", "medium"], "--severity must be one of soft, hard"),
        (["--enable", "slow-sae", "--jitter-ms", "-5"], "--jitter-ms must be >= 0"),
        (["--enable", "slow-sae", "--ttl-seconds", "0"], "--ttl-seconds must be > 0"),
        (["--disable", "bogus"], "unknown chaos flag 'bogus'"),
        (["--disable", "slow-sae", "--percent", "5"], "go with --enable"),
        ([], "one of the arguments"),
        (["--enable", "slow-sae", "--disable", "drop-s3"], "not allowed with"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    control: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hif: ") and message in err and err.count("\n") == 1
    assert not control.exists()  # nothing was written


def test_status_names_invalid_flags_and_exits_0(control: Path, capsys: pytest.CaptureFixture[str]) -> None:
    control.parent.mkdir(parents=True)
    flags = {"drop-s3": {"percent": 100, "expires_at": "never"}, "slow-sae": {"jitter_ms": 5}, "new": {}}
    control.write_text(json.dumps({"version": 1, "flags": flags}))
    assert main(["--status"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "slow-sae (percent=100, jitter_ms=5)",
        "invalid (inactive): drop-s3: expires_at must be a finite number, got 'never'",
        "ignored: unknown flag 'new'",
    ]
    assert err == ""
    assert main(["--status", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert list(got["flags"]) == ["slow-sae"] and "expires_at" in got["invalid"]["drop-s3"]
    control.write_text('{"version": 1, "flags": ')
    assert main(["--status"]) == 0
    assert "control file ignored: not valid JSON" in capsys.readouterr().out


def test_enable_and_disable_rewrite_an_invalid_file_naming_what_they_dropped(
    control: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    control.parent.mkdir(parents=True)
    flags = {"drop-s3": {"percent": 100, "expires_at": "never"}, "slow-sae": {"jitter_ms": 5}}
    control.write_text(json.dumps({"version": 1, "flags": flags}))
    assert main(["--enable", "rate-limit-spike"]) == 0
    out = capsys.readouterr().out
    assert "dropped invalid flag drop-s3 (expires_at must be a finite number, got 'never')" in out
    assert set(_flags(control)) == {"slow-sae", "rate-limit-spike"}
    assert chaos.read_state(control).problems() == []
    control.write_text('{"version": 1, "flags": ')
    assert main(["--disable", "slow-sae"]) == 0
    assert "dropped the unreadable content (not valid JSON" in capsys.readouterr().out
    assert _flags(control) == {}
    assert main(["--disable-all"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--enable", "slow-sae", "--jitter-ms", "nan"], "--jitter-ms must be a finite number, got nan"),
        (["--enable", "slow-sae", "--jitter-ms", "inf"], "--jitter-ms must be a finite number, got inf"),
        (["--enable", "drop-s3", "--percent", "nan"], "--percent must be a finite number, got nan"),
        (["--enable", "drop-s3", "--ttl-seconds", "nan"], "--ttl-seconds must be > 0 and finite"),
        (["--enable", "drop-s3", "--ttl-seconds", "inf"], "--ttl-seconds must be > 0 and finite"),
    ],
)
def test_non_finite_numbers_are_refused(
    control: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hif: ") and message in err and err.count("\n") == 1
    assert not control.exists()


def _toggle(path: str, flag: str, rounds: int) -> None:
    for i in range(rounds):
        if i % 2:
            chaos.apply_change(disable=flag, path=Path(path))
        else:
            chaos.apply_change(enable=chaos.Fault(flag=flag, percent=float(i % 100)), path=Path(path))


def test_concurrent_writers_never_lose_or_tear_an_update(control: Path) -> None:
    """Four processes toggle four flags under the lock: the file always parses and every change is logged."""
    ctx = multiprocessing.get_context("fork")  # the target lives in this test module
    rounds = 25  # odd: each flag ends enabled
    procs = [ctx.Process(target=_toggle, args=(str(control), f, rounds)) for f in chaos.FLAGS]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert set(chaos.read_state(control).faults) == set(chaos.FLAGS)
    events = chaos.read_events(control.with_name("chaos_events.jsonl"))
    assert len(events) == rounds * len(chaos.FLAGS)
    assert not list(control.parent.glob(".*.tmp"))


def test_reenabling_a_flag_names_the_setting_it_replaces(
    control: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--enable", "slow-sae", "--percent", "50", "--jitter-ms", "150"]) == 0
    first = capsys.readouterr().out
    assert "replaces" not in first and f"no explainer has read {control} yet" in first
    assert main(["--enable", "slow-sae", "--percent", "80", "--jitter-ms", "400"]) == 0
    out = capsys.readouterr().out
    assert "enabled slow-sae (percent=80, jitter_ms=400)" in out
    assert "replaces slow-sae (percent=50, jitter_ms=150)" in out


def _explainer_reading(path: Path, stop: Any) -> None:
    reader = chaos.ChaosReader(path, min_interval_s=0.05, heartbeat=True)
    while not stop.is_set():
        reader.active()
        time.sleep(0.05)


def test_the_injector_says_whether_an_explainer_read_its_write(
    control: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    reader = ctx.Process(target=_explainer_reading, args=(control, stop))
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while chaos.last_read_s(control) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert main(["--enable", "drop-s3", "--percent", "10"]) == 0
        assert "chaos: an explainer read it" in capsys.readouterr().out
    finally:
        stop.set()
        reader.join(10)
    assert main(["--disable", "drop-s3"]) == 0
    out = capsys.readouterr().out
    assert "no explainer read it within 2 s" in out and "last read was" in out
