"""The chaos control file: written by the injector, read by the Explainer.

Format (version 1), at ``CHAOS_CONTROL_PATH`` or ``/tmp/hif/chaos.json``::

    {"version": 1,
     "updated_at": 1764201600.0,
     "flags": {
        "slow-sae":         {"percent": 50, "jitter_ms": 150, "enabled_at": ..., "expires_at": null},
        "drop-s3":          {"percent": 10, ...},
        "fail-attribution": {"percent": 25, "mode": "fallback" | "fail", ...},
        "rate-limit-spike": {"percent": 100, "severity": "soft" | "hard", ...}}}

A flag present and not past ``expires_at`` is active. A missing file means no chaos; a corrupt
file means no chaos plus one warning. Writes are atomic (temp file + rename) under an ``flock``
on a sibling lock file, and every change is appended to the event log (``chaos_events.jsonl``
next to the control file, or ``CHAOS_EVENT_LOG_PATH``) so reports can place pre/during/post
windows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hif.config import chaos_control_path
from hif.errors import HarnessError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SLOW_SAE = "slow-sae"
DROP_S3 = "drop-s3"
FAIL_ATTRIBUTION = "fail-attribution"
RATE_LIMIT_SPIKE = "rate-limit-spike"
FLAGS = (SLOW_SAE, DROP_S3, FAIL_ATTRIBUTION, RATE_LIMIT_SPIKE)
MODES = ("fallback", "fail")
SEVERITIES = ("soft", "hard")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One enabled chaos flag and its parameters."""

    flag: str
    percent: float = 100.0
    jitter_ms: float = 0.0
    mode: str = "fallback"
    severity: str = "hard"
    enabled_at: float = 0.0
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if self.flag not in FLAGS:
            raise HarnessError(f"unknown chaos flag {self.flag!r}; known: {', '.join(FLAGS)}")
        if not 0.0 <= self.percent <= 100.0:
            raise HarnessError(f"--percent must be within 0..100, got {self.percent}")
        if self.jitter_ms < 0:
            raise HarnessError(f"--jitter-ms must be >= 0, got {self.jitter_ms}")
        if self.mode not in MODES:
            raise HarnessError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.severity not in SEVERITIES:
            raise HarnessError(f"--severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def hits(self, rng: random.Random) -> bool:
        """Whether this fault fires for one request (``percent`` of the time)."""
        return self.percent >= 100.0 or rng.random() * 100.0 < self.percent

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("flag")
        return data

    @classmethod
    def from_json(cls, flag: str, data: Mapping[str, Any]) -> Fault:
        if not isinstance(data, Mapping):
            raise ValueError(f"flag {flag!r} must map to an object")
        names = {f.name for f in dataclasses.fields(cls)} - {"flag"}
        return cls(flag=flag, **{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True, slots=True)
class ChaosState:
    """Every flag in the control file; ``active(now)`` keeps those not expired."""

    faults: Mapping[str, Fault] = dataclasses.field(default_factory=dict)
    updated_at: float = 0.0

    def active(self, now: float | None = None) -> dict[str, Fault]:
        now = time.time() if now is None else now
        return {name: f for name, f in self.faults.items() if f.active(now)}

    def get(self, flag: str, now: float | None = None) -> Fault | None:
        return self.active(now).get(flag)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "updated_at": self.updated_at,
            "flags": {name: f.to_json() for name, f in sorted(self.faults.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChaosState:
        flags = data.get("flags")
        if not isinstance(flags, Mapping):
            raise ValueError("'flags' must be an object")
        faults = {name: Fault.from_json(name, spec) for name, spec in flags.items()}
        return cls(faults=faults, updated_at=float(data.get("updated_at") or 0.0))


def event_log_path(control_path: Path) -> Path:
    override = os.environ.get("CHAOS_EVENT_LOG_PATH")
    return Path(override) if override else control_path.with_name("chaos_events.jsonl")


def parse(text: str) -> ChaosState:
    """Parse control-file text; raises ValueError (or HarnessError for bad values) when corrupt."""
    data = json.loads(text)
    if not isinstance(data, Mapping):
        raise ValueError("the control file must hold a JSON object")
    return ChaosState.from_json(data)


def read_state(path: Path | None = None) -> ChaosState:
    """Read the control file strictly; a corrupt file raises HarnessError."""
    path = path or chaos_control_path()
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return ChaosState()
    except (ValueError, TypeError, HarnessError) as exc:
        raise HarnessError(f"chaos control file {path} is corrupt: {exc}") from exc


class ChaosReader:
    """The Explainer's view of the control file, re-read only when its mtime/size changes.

    Import-guarded by design: any problem reading the file means *no chaos*, logged once per
    distinct problem, so chaos tooling can never take the worker down.
    """

    def __init__(self, path: Path | None = None, *, min_interval_s: float = 0.1) -> None:
        self.path = path or chaos_control_path()
        self._min_interval_s = min_interval_s
        self._checked_at = 0.0
        self._stamp: tuple[int, int, int] | None = None
        self._state = ChaosState()
        self._warned: str | None = None

    def state(self, now: float | None = None) -> ChaosState:
        mono = time.monotonic()
        if mono - self._checked_at >= self._min_interval_s:
            self._checked_at = mono
            self._refresh()
        return self._state

    def active(self, now: float | None = None) -> dict[str, Fault]:
        return self.state(now).active(now)

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._state = None, ChaosState()
            return
        # the inode too: every write is a rename of a new file, so a same-size rewrite within the
        # filesystem's mtime granularity is still seen
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._state = parse(self.path.read_text())
            self._warned = None
        except Exception as exc:  # import-guarded: never let chaos tooling crash the worker
            self._state = ChaosState()
            problem = f"{type(exc).__name__}: {exc}"
            if problem != self._warned:
                log.warning(
                    "ignoring corrupt chaos control file %s (%s); no chaos applied", self.path, problem
                )
                self._warned = problem


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, state: ChaosState) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _append_event(path: Path, event: Mapping[str, Any]) -> None:
    with open(event_log_path(path), "a") as fh:
        fh.write(json.dumps(event, sort_keys=True) + "\n")


def apply_change(
    *,
    enable: Fault | None = None,
    disable: str | None = None,
    disable_all: bool = False,
    path: Path | None = None,
    now: float | None = None,
) -> ChaosState:
    """Enable one fault, disable one flag, or disable all; atomically, under the lock.

    ``disable_all`` works even on a corrupt file (it rewrites it). Each change is appended to the
    event log as ``{"ts", "action", "flag", "params"}``.
    """
    path = path or chaos_control_path()
    now = time.time() if now is None else now
    with _locked(path):
        state = ChaosState() if disable_all else read_state(path)
        faults = dict(state.active(now))
        events: list[dict[str, Any]] = []
        if disable_all:
            events.append({"ts": now, "action": "disable-all", "flag": None, "params": {}})
            faults = {}
        if disable is not None:
            if disable not in FLAGS:
                raise HarnessError(f"unknown chaos flag {disable!r}; known: {', '.join(FLAGS)}")
            faults.pop(disable, None)
            events.append({"ts": now, "action": "disable", "flag": disable, "params": {}})
        if enable is not None:
            fault = dataclasses.replace(enable, enabled_at=now)
            faults[fault.flag] = fault
            events.append({"ts": now, "action": "enable", "flag": fault.flag, "params": fault.to_json()})
        new_state = ChaosState(faults=faults, updated_at=now)
        _write_atomic(path, new_state)
        for event in events:
            _append_event(path, event)
    return new_state


def read_events(path: Path) -> list[dict[str, Any]]:
    """The event log as a list; corrupt lines are skipped."""
    events: list[dict[str, Any]] = []
    try:
        with open(path) as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    item = json.loads(line)
                    if isinstance(item, dict) and "ts" in item:
                        events.append(item)
    except FileNotFoundError:
        pass
    return events
