"""``hif chaos`` / ``python -m tests.chaos.chaos_injector``: toggle chaos flags in the control file.

The runbook's flags, plus ``--ttl-seconds`` (the flag expires by itself) and ``--status``::

    hif chaos --enable slow-sae --percent 50 --jitter-ms 150
    hif chaos --enable fail-attribution --percent 25 --mode fallback --ttl-seconds 60
    hif chaos --enable rate-limit-spike --severity hard
    hif chaos --disable slow-sae
    hif chaos --disable-all
    hif chaos --status [--json]      # active flags, and invalid or ignored parts of the file

Writes go through :func:`hif.chaos.apply_change` (atomic, under a lock, appended to the event log);
each rewrites the file valid and names what it dropped of an invalid one.
Bad input is one readable line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import NoReturn

from hif import chaos
from hif.config import chaos_control_path
from hif.errors import HarnessError, HifError

# Which flag each parameter belongs to: a parameter given for another flag is a mistake, not a no-op.
_PARAM_OWNERS = {
    "jitter_ms": chaos.SLOW_SAE,
    "mode": chaos.FAIL_ATTRIBUTION,
    "severity": chaos.RATE_LIMIT_SPIKE,
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``hif: ...``) and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise HarnessError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hif chaos", description="Toggle chaos flags read by the Explainer.")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--enable", metavar="FLAG", help=f"enable one flag: {', '.join(chaos.FLAGS)}")
    action.add_argument("--disable", metavar="FLAG", help="disable one flag")
    action.add_argument("--disable-all", action="store_true", help="disable every flag")
    action.add_argument("--status", action="store_true", help="print the active flags and any invalid ones")
    p.add_argument("--percent", type=float, default=None, help="share of requests hit, 0-100 (default 100)")
    p.add_argument(
        "--jitter-ms", type=float, default=None, help="slow-sae: added latency, up to this many ms"
    )
    p.add_argument(
        "--mode", default=None, help="fail-attribution: fallback (heuristic) or fail (mark failed)"
    )
    p.add_argument("--severity", default=None, help="rate-limit-spike: soft or hard")
    p.add_argument(
        "--ttl-seconds", type=float, default=None, help="the flag expires by itself after this long"
    )
    p.add_argument(
        "--path",
        type=Path,
        default=None,
        help="control file (default: CHAOS_CONTROL_PATH or /tmp/hif/chaos.json)",
    )
    p.add_argument("--json", action="store_true", help="--status as JSON")
    return p


def fault_from_args(args: argparse.Namespace, now: float) -> chaos.Fault:
    """The Fault ``--enable`` asks for; parameters that do not belong to the flag are rejected."""
    flag = args.enable
    if flag not in chaos.FLAGS:
        raise HarnessError(f"unknown chaos flag {flag!r}; known: {', '.join(chaos.FLAGS)}")
    params: dict[str, object] = {}
    for name, owner in _PARAM_OWNERS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if owner != flag:
            raise HarnessError(f"--{name.replace('_', '-')} only applies to {owner}, not {flag}")
        params[name] = value
    if args.percent is not None:
        params["percent"] = args.percent
    if args.ttl_seconds is not None:
        if not args.ttl_seconds > 0 or math.isinf(args.ttl_seconds):  # NaN fails the first test
            raise HarnessError(f"--ttl-seconds must be > 0 and finite, got {args.ttl_seconds}")
        params["expires_at"] = now + args.ttl_seconds
    return chaos.Fault(flag=flag, **params)  # type: ignore[arg-type]


def describe(fault: chaos.Fault, now: float) -> str:
    parts = [f"percent={fault.percent:g}"]
    if fault.flag == chaos.SLOW_SAE:
        parts.append(f"jitter_ms={fault.jitter_ms:g}")
    if fault.flag == chaos.FAIL_ATTRIBUTION:
        parts.append(f"mode={fault.mode}")
    if fault.flag == chaos.RATE_LIMIT_SPIKE:
        parts.append(f"severity={fault.severity}")
    if fault.expires_at is not None:
        parts.append(f"expires in {max(0.0, fault.expires_at - now):.0f}s")
    return f"{fault.flag} ({', '.join(parts)})"


def status_text(state: chaos.ChaosState, path: Path, now: float, *, as_json: bool) -> str:
    active = state.active(now)
    if as_json:
        return json.dumps(
            {
                "path": str(path),
                "flags": {n: f.to_json() for n, f in sorted(active.items())},
                "invalid": dict(sorted(state.invalid.items())),
                "ignored": list(state.ignored),
                "problem": state.problem,
            }
        )
    lines = [describe(f, now) for _, f in sorted(active.items())] or [f"no chaos flags active ({path})"]
    if state.problem is not None:
        lines.append(f"control file ignored: {state.problem}")
    lines += [f"invalid (inactive): {name}: {why}" for name, why in sorted(state.invalid.items())]
    lines += [f"ignored: {item}" for item in state.ignored]
    return "\n".join(lines)


def _dropped(change: chaos.Change) -> str:
    return f"; dropped {', '.join(change.dropped)}" if change.dropped else ""


READ_WAIT_S = 2.0  # how long hif chaos waits to see an explainer read what it wrote
READ_POLL_S = 0.1


def read_by_explainer(path: Path, written_s: float, wait_s: float = READ_WAIT_S) -> str:
    """Did an explainer check the control file since ``written_s``? Waits up to ``wait_s`` when one
    has been reading it; a file no explainer ever read is said at once."""
    deadline = time.monotonic() + wait_s
    last = chaos.last_read_s(path)
    while last is not None and last < written_s and time.monotonic() < deadline:
        time.sleep(READ_POLL_S)  # waiting on another process's heartbeat, not standing in for work
        last = chaos.last_read_s(path)
    if last is None:
        return f"no explainer has read {path} yet (is one running with CHAOS_CONTROL_PATH={path}?)"
    if last >= written_s:
        return f"an explainer read it {max(0.0, last - written_s):.1f} s after the write"
    return (
        f"no explainer read it within {wait_s:g} s (the last read was {time.time() - last:.0f} s ago: "
        f"is the explainer still running with CHAOS_CONTROL_PATH={path}?)"
    )


def run(args: argparse.Namespace) -> str:
    """Apply what the arguments ask for; returns the line to print."""
    path = args.path or chaos_control_path()
    now = time.time()
    if args.status:
        return status_text(chaos.read_state(path, warn=False), path, now, as_json=args.json)
    if args.enable is None and any(
        getattr(args, n) is not None for n in (*_PARAM_OWNERS, "percent", "ttl_seconds")
    ):
        raise HarnessError("--percent, --jitter-ms, --mode, --severity and --ttl-seconds go with --enable")
    if args.disable_all:
        chaos.apply_change(disable_all=True, path=path, now=now)
        line = f"chaos: all flags disabled ({path})"
    elif args.disable is not None:
        change = chaos.apply_change(disable=args.disable, path=path, now=now)
        line = f"chaos: disabled {args.disable} ({path}){_dropped(change)}"
    else:
        fault = fault_from_args(args, now)
        before = chaos.read_state(path, warn=False).active(now).get(fault.flag)
        change = chaos.apply_change(enable=fault, path=path, now=now)
        replaced = f"; replaces {describe(before, now)}" if before is not None else ""
        line = f"chaos: enabled {describe(fault, now)} ({path}){replaced}{_dropped(change)}"
    return f"{line}\nchaos: {read_by_explainer(path, now)}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        print(run(build_parser().parse_args(argv)))
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
