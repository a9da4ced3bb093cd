"""``hif load`` / ``python -m tests.load.load_runner``: flags -> LoadSettings -> run_load -> exit code.

Exit codes: 0 ok (or not gated), 1 an SLO gate failed, 2 bad flags or pre-flight failed, 3 invalid
run (the generator was the bottleneck), 130 interrupted: Ctrl-C (or SIGTERM) stops the load, drains,
flushes and still writes the summary, then exits 130 as the soak does.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from hif.config import add_options, build
from hif.errors import HifError
from hif.harness import gates
from hif.harness.client import new_event_loop
from hif.harness.load.run import run_load
from hif.harness.load.settings import LoadSettings
from hif.harness.load.summary import LoadSummary

EXIT_INTERRUPTED = 130


def parser(prog: str = "hif load") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Offer chat load (with explanations) to a gateway.")
    add_options(p, LoadSettings)
    p.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=gates.help_text(),
    )
    p.add_argument("--config", type=Path, default=None, help="TOML file with these options (table [load])")
    return p


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> LoadSettings:
    """Flags > ``HIF_*`` env (``os.environ`` unless given) > ``--config`` file > defaults."""
    return dataclasses.replace(build(LoadSettings, cli=args, env=env, file=args.config), slo=tuple(args.slo))


def stdout_line(summary: LoadSummary) -> dict[str, Any]:
    """The compact one-line JSON printed at the end (summary.json has everything)."""
    d = summary.data
    chat, expl = d["chat"], d["explanations"]
    return {
        "run_id": d["run_id"],
        "shard": d["shard"],
        "duration_s": d["duration_s"],
        "requests": chat["requests"],
        "rps": chat["rps"],
        "error_rate": chat["error_rate"],
        "goodput_rps": chat.get("goodput_rps"),  # summary v4
        "p50_ms": chat["latency_ms"]["p50_ms"],
        "p95_ms": chat["latency_ms"]["p95_ms"],
        "p99_ms": chat["latency_ms"]["p99_ms"],
        "intended_p99_ms": chat["intended_latency_ms"]["p99_ms"],
        "traces": expl["traces"],
        "sentence_p95_ms": expl["sla_ms"]["sentence"]["p95_ms"],
        "token_p95_ms": expl["sla_ms"]["token"]["p95_ms"],
        "expired_failed_rate": expl["expired_failed_rate"],
        "orphaned_rate": expl["orphaned_rate"],
        "valid": d["generator"]["valid"],
        "slo_pass": d["slo"]["pass"],  # null: not gated (no --slo)
        "exit_code": d["exit_code"],
        "results_dir": d["settings"]["results_dir"],
        "featureset": (d.get("featureset") or {}).get("used"),
    }


async def _run(settings: LoadSettings) -> LoadSummary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await run_load(settings, stop=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None, prog: str = "hif load") -> int:
    args = parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    loop = new_event_loop()
    try:
        settings = settings_from_args(args)
        # The start-up's objects (modules, the tokenizer) live as long as the run: frozen, they
        # are out of the collector's walks, which took ~7% of a streamed run's CPU in a profile.
        gc.freeze()
        # What a run makes per request (records, lists, tuples) is acyclic and freed by reference
        # counts; a young-generation pass every 700 allocations cost a streamed run ~4 us a stream
        # (docs/load.md, "Streaming costs"), every 50,000 it is noise.
        gc.set_threshold(50_000, 20, 100)
        summary = loop.run_until_complete(_run(settings))
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    finally:
        loop.close()
    for reason in summary.data["generator"]["reasons"]:
        print(f"hif: run invalid: {reason}", file=sys.stderr)
    for line in verdict_lines(summary.data["slo"]):
        print(f"hif: {line}", file=sys.stderr)
    sys.stdout.write(orjson.dumps(stdout_line(summary)).decode() + "\n")
    sys.stdout.flush()
    if summary.data["stopped_by"] == "stop":
        return EXIT_INTERRUPTED
    return summary.exit_code


def verdict_lines(slo: Mapping[str, Any]) -> list[str]:
    """What the run's gates said, one line each; a run without gates says it was not gated."""
    if not slo["gates"]:
        return [
            "not gated (no --slo given): the runbook's example targets are in summary.json, for reference"
        ]
    out = []
    for gate in slo["gates"]:
        if gate["pass"] is None:
            out.append(f"SLO {gate['name']}: no data in this run")
        elif not gate["pass"]:
            op = gate.get("op", "<=")
            out.append(f"SLO failed: {gate['name']} = {gate['value']}, not {op} {gate['threshold']}")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
