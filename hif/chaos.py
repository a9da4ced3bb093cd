"""The chaos control file: written by the injector, read by the Explainer and the harness.

Format (version 1), at ``CHAOS_CONTROL_PATH`` or ``/tmp/hif/chaos.json``::

    {"version": 1,
     "updated_at": 1764201600.0,
     "flags": {
        "slow-sae":         {"percent": 50, "jitter_ms": 150, "enabled_at": ..., "expires_at": null},
        "drop-s3":          {"percent": 10, ...},
        "fail-attribution": {"percent": 25, "mode": "fallback" | "fail", ...},
        "rate-limit-spike": {"percent": 100, "severity": "soft" | "hard", ...}}}

The file is parsed once into a validated :class:`ChaosState` and nothing downstream re-checks it:

- a flag is active while it validates and ``expires_at`` is null or in the future;
- a flag with an invalid field (wrong type, out of range, NaN or infinite, not in its enum) is
  inactive and listed in ``ChaosState.invalid`` with the reason; the other flags stay active;
- unknown flags and unknown fields are ignored, so an older reader takes a newer injector's file;
- a missing file is no chaos; so is one that is not a regular file, is over 64 KiB, is not JSON
  or not a JSON object (``ChaosState.problem`` says which).

Every reader logs what it ignored once per change of the file (:data:`log`, ``hif.chaos``).
Writes are atomic (temp file + rename) under an ``flock`` on a sibling lock file, and every change
is appended to the event log (``chaos_events.jsonl`` next to the control file, or
``CHAOS_EVENT_LOG_PATH``) so reports can place pre/during/post windows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import random
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hif.config import chaos_control_path
from hif.errors import HarnessError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_FILE_BYTES = 64 * 1024
SLOW_SAE = "slow-sae"
DROP_S3 = "drop-s3"
FAIL_ATTRIBUTION = "fail-attribution"
RATE_LIMIT_SPIKE = "rate-limit-spike"
FLAGS = (SLOW_SAE, DROP_S3, FAIL_ATTRIBUTION, RATE_LIMIT_SPIKE)
MODES = ("fallback", "fail")
SEVERITIES = ("soft", "hard")
FIELDS = ("percent", "jitter_ms", "mode", "severity", "enabled_at", "expires_at")


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (bools are not numbers here, huge ints overflow)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def field_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for fault field ``name``, or None when it is."""
    if name in ("mode", "severity"):
        allowed = MODES if name == "mode" else SEVERITIES
        return (
            None
            if value in allowed and isinstance(value, str)
            else (f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        )
    if name == "expires_at" and value is None:
        return None
    number = _finite(value)
    if number is None:
        return f"{name} must be a finite number, got {value!r}"
    if name == "percent" and not 0.0 <= number <= 100.0:
        return f"percent must be within 0..100, got {value!r}"
    if name == "jitter_ms" and number < 0:
        return f"jitter_ms must be >= 0, got {value!r}"
    return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One enabled chaos flag and its parameters; an invalid value raises HarnessError."""

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
        for name in FIELDS:
            value = getattr(self, name)
            problem = field_problem(name, value)
            if problem is not None:  # worded for the injector, whose flags these are
                raise HarnessError(f"--{name.replace('_', '-')}{problem[len(name) :]}")
            if name not in ("mode", "severity") and value is not None:
                object.__setattr__(self, name, float(value))  # 50 and 50.0 are one value

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
    def from_json(cls, flag: str, data: Any) -> tuple[Fault | None, str | None, list[str]]:
        """``(fault, None, unknown)`` when the flag validates, else ``(None, reason, unknown)``.

        ``unknown`` names the fields this version does not know (ignored, never an error).
        """
        if not isinstance(data, Mapping):
            return None, f"must map to an object, got {type(data).__name__}", []
        unknown = [str(k) for k in data if k not in FIELDS]
        for name in FIELDS:
            if name in data:
                problem = field_problem(name, data[name])
                if problem is not None:
                    return None, problem, unknown
        return cls(flag=flag, **{k: data[k] for k in FIELDS if k in data}), None, unknown


@dataclasses.dataclass(frozen=True, slots=True)
class ChaosState:
    """The validated control file.

    ``faults`` are the flags that validate (``active(now)`` keeps those whose window is open);
    ``invalid`` maps each flag that does not to why; ``ignored`` names unknown flags and fields;
    ``problem`` says why the whole file counts as no chaos (None when it was read).
    """

    faults: Mapping[str, Fault] = dataclasses.field(default_factory=dict)
    updated_at: float = 0.0
    invalid: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    problem: str | None = None

    def active(self, now: float | None = None) -> dict[str, Fault]:
        """The faults whose window is open at ``now``; never raises (a bad ``now`` means the clock)."""
        now = _finite(now)
        now = time.time() if now is None else now
        return {name: f for name, f in self.faults.items() if f.active(now)}

    def get(self, flag: str, now: float | None = None) -> Fault | None:
        return self.active(now).get(flag)

    def problems(self) -> list[str]:
        """Everything a reader ignored, one readable item each (empty for a clean file)."""
        out = [] if self.problem is None else [f"{self.problem}; no chaos applied"]
        out += [f"invalid flag {name} ({why}): inactive" for name, why in sorted(self.invalid.items())]
        out += [f"ignored {item}" for item in self.ignored]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "updated_at": self.updated_at,
            "flags": {name: f.to_json() for name, f in sorted(self.faults.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> ChaosState:
        """Validate a decoded control file; never raises."""
        if not isinstance(data, Mapping):
            return cls(problem=f"the file holds a JSON {type(data).__name__}, not an object")
        flags = data.get("flags", {})
        if not isinstance(flags, Mapping):
            return cls(problem=f"'flags' must be an object, got {type(flags).__name__}")
        ignored = [f"unknown field {k!r}" for k in data if k not in ("version", "updated_at", "flags")]
        updated_at = _finite(data.get("updated_at", 0.0))
        if updated_at is None:
            ignored.append(f"invalid updated_at {data.get('updated_at')!r}")
        faults: dict[str, Fault] = {}
        invalid: dict[str, str] = {}
        for name, spec in flags.items():
            if name not in FLAGS:
                ignored.append(f"unknown flag {name!r}")
                continue
            fault, why, unknown = Fault.from_json(name, spec)
            ignored += [f"unknown field {name}.{k}" for k in unknown]
            if fault is None:
                invalid[name] = str(why)
            else:
                faults[name] = fault
        return cls(faults, updated_at or 0.0, invalid, tuple(ignored))


def event_log_path(control_path: Path) -> Path:
    override = os.environ.get("CHAOS_EVENT_LOG_PATH")
    return Path(override) if override else control_path.with_name("chaos_events.jsonl")


HEARTBEAT_EVERY_S = 0.5  # how often an explainer's reader touches the heartbeat file, at most


def heartbeat_path(control_path: Path) -> Path:
    """The file an explainer's reader touches beside the control file each time it checks it, so
    ``hif chaos`` can tell whether anyone is reading the file it writes."""
    return control_path.with_name(control_path.name + ".heartbeat")


def last_read_s(control_path: Path) -> float | None:
    """Wall time an explainer last checked ``control_path`` (None: never, as far as the file says)."""
    try:
        return heartbeat_path(control_path).stat().st_mtime
    except OSError:
        return None


def parse(data: str | bytes) -> ChaosState:
    """Parse control-file content into a validated state; never raises."""
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return ChaosState(problem=f"not valid JSON ({type(exc).__name__}: {str(exc)[:120]})")
    return ChaosState.from_json(decoded)


class _UnreadableError(Exception):
    """The path exists but is no file this module will read (its message says why)."""


def _read_capped(path: Path) -> bytes | None:
    """The file's bytes, None when it does not exist; raises _UnreadableError otherwise.

    Non-blocking and type-checked so a FIFO cannot stall a worker and a symlink to a device
    (``/dev/zero``) cannot feed it without end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _UnreadableError(f"cannot open it ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _UnreadableError("not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _UnreadableError(f"cannot read it ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise _UnreadableError(f"larger than {MAX_FILE_BYTES} bytes")
    return b"".join(chunks)


def _load(path: Path) -> tuple[ChaosState, bytes]:
    """The state at ``path`` and a digest of what was read (for one warning per change)."""
    try:
        data = _read_capped(path)
    except _UnreadableError as exc:
        return ChaosState(problem=str(exc)), str(exc).encode()
    if data is None:
        return ChaosState(), b""
    return parse(data), hashlib.blake2b(data, digest_size=16).digest()


# The last digest each path was read with, process-wide, so a file read by several readers (the
# report inside a soak run, the load runner's ticker) is warned about once per change, not once
# per reader or per read. It is a log memo, not state any decision depends on.
_seen: dict[str, bytes] = {}
_seen_lock = threading.Lock()


def _warn_once(path: Path, digest: bytes, state: ChaosState) -> None:
    with _seen_lock:
        if _seen.get(str(path)) == digest:
            return
        _seen[str(path)] = digest
    problems = state.problems()
    if problems:
        log.warning("chaos control file %s: %s", path, "; ".join(problems))


def read_state(path: Path | None = None, *, warn: bool = True) -> ChaosState:
    """Read and validate the control file; never raises (problems are in the state).

    ``warn`` logs what was ignored, once per change of the file; the injector passes False as it
    prints the same itself.
    """
    path = path or chaos_control_path()
    state, digest = _load(path)
    if warn:
        _warn_once(path, digest, state)
    return state


class ChaosReader:
    """The Explainer's and the load runner's view of the control file, re-read when it changes.

    Neither :meth:`state` nor :meth:`active` raises: whatever is in (or at) the path, the worst
    case is *no chaos* plus one warning per change of the file.
    """

    def __init__(
        self, path: Path | None = None, *, min_interval_s: float = 0.1, heartbeat: bool = False
    ) -> None:
        self.path = path or chaos_control_path()
        self._min_interval_s = min_interval_s
        self._heartbeat = heartbeat  # the explainer's readers say they read; the load runner's do not
        self._beat_at = 0.0
        self._checked_at = 0.0
        self._stamp: tuple[int, int, int] | None = None
        self._state = ChaosState()

    def state(self, now: float | None = None) -> ChaosState:
        mono = time.monotonic()
        if mono - self._checked_at >= self._min_interval_s:
            self._checked_at = mono
            if self._heartbeat and mono - self._beat_at >= HEARTBEAT_EVERY_S:
                self._beat_at = mono
                self._beat()
            try:
                self._refresh()
            except Exception:  # the last line of defence: chaos tooling must never stop a worker
                log.exception("reading chaos control file %s failed; no chaos applied", self.path)
                self._stamp, self._state = None, ChaosState()
        return self._state

    def active(self, now: float | None = None) -> dict[str, Fault]:
        return self.state(now).active(now)

    def _beat(self) -> None:
        beat = heartbeat_path(self.path)
        try:
            os.utime(beat)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                beat.parent.mkdir(parents=True, exist_ok=True)
                beat.touch()
        except OSError:  # a read-only folder: no heartbeat, and chaos still works
            pass

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
        self._state = read_state(self.path)


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


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """What :func:`apply_change` wrote, and what of the old file it could not carry over."""

    state: ChaosState
    dropped: tuple[str, ...] = ()


def apply_change(
    *,
    enable: Fault | None = None,
    disable: str | None = None,
    disable_all: bool = False,
    path: Path | None = None,
    now: float | None = None,
) -> Change:
    """Enable one fault, disable one flag, or disable all; atomically, under the lock.

    The file is always rewritten valid: invalid flags, unknown flags and fields and unreadable
    content are dropped and named in ``Change.dropped``. Each change is appended to the event log
    as ``{"ts", "action", "flag", "params"}``.
    """
    path = path or chaos_control_path()
    now = time.time() if now is None else now
    if disable is not None and disable not in FLAGS:
        raise HarnessError(f"unknown chaos flag {disable!r}; known: {', '.join(FLAGS)}")
    with _locked(path):
        old = read_state(path, warn=False)
        faults = {} if disable_all else dict(old.active(now))
        events: list[dict[str, Any]] = []
        if disable_all:
            events.append({"ts": now, "action": "disable-all", "flag": None, "params": {}})
        if disable is not None:
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
    return Change(new_state, () if disable_all else _dropped(old))


def _dropped(old: ChaosState) -> tuple[str, ...]:
    out = [] if old.problem is None else [f"the unreadable content ({old.problem})"]
    out += [f"invalid flag {name} ({why})" for name, why in sorted(old.invalid.items())]
    out += old.ignored
    return tuple(out)


def read_events(path: Path) -> list[dict[str, Any]]:
    """The event log as a list: ``{"ts": finite number, "action": str, "flag": str | null,
    "params": object}`` per line; other lines are skipped. Like the control file, the log is read
    only when it is a regular file, opened non-blocking; anything else reads as no events."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot open chaos event log %s (%s); no events read", path, exc.strerror or exc)
        return []
    events: list[dict[str, Any]] = []
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            log.warning("chaos event log %s is not a regular file; no events read", path)
            return []
        for line in fh:
            try:
                item = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if _is_event(item):
                events.append(item)
    return events


def _is_event(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and _finite(item.get("ts")) is not None
        and isinstance(item.get("action"), str)
        and isinstance(item.get("flag"), str | None)
        and isinstance(item.get("params", {}), dict)
    )
