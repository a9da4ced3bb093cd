"""``hif soak`` / ``python -m tests.load.soak_runner``: flags -> SoakSettings -> run_soak -> exit code.

Exit codes: 0 finished, 2 bad flags / pre-flight failed / nothing to resume, 130 interrupted
(Ctrl-C or SIGTERM: the segment in flight is dropped; ``--resume`` runs it again). Drift and leak
findings are in soak_summary.json and on stdout, never an exit code: a leak is a finding.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hif.config import add_options, build
from hif.errors import HifError
from hif.harness.client import new_event_loop
from hif.harness.records import SOAK_SUMMARY_FILE
from hif.harness.soak.runner import SoakSettings, run_soak

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


def parser(prog: str = "hif soak") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Soak a gateway with rotating load segments.")
    add_options(p, SoakSettings)
    p.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an SLO used to flag segments: chat_p95_ms (500), error_rate (0.01), "
        "sentence_p95_ms (1500), token_p95_ms (3500), expired_failed_rate (0.05); or add any load "
        "runner gate, floors too (goodput_rps>=20)",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML file with these options (table [soak])")
    return p


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> SoakSettings:
    """Flags > ``HIF_*`` env (``os.environ`` unless given) > ``--config`` file > defaults."""
    return dataclasses.replace(build(SoakSettings, cli=args, env=env, file=args.config), slo=tuple(args.slo))


def stdout_line(summary: dict[str, Any]) -> dict[str, Any]:
    """One JSON line at the end: where the soak got to and what the drift analysis found."""
    drift = summary.get("drift", {})
    return {
        "status": summary["status"],
        "profile": summary["plan"]["profile"],
        "segments_done": len(summary["segments"]),
        "segments_planned": summary["plan"]["segments"],
        "segments_breaching_slo": sum(1 for s in summary["segments"] if s["slo_breaches"]),
        "verdict": drift.get("overall"),
        "findings": drift.get("findings", []),
    }


async def _run(settings: SoakSettings) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        # First signal: stop after the current segment drains. A second one takes the default path.
        logging.getLogger("hif.soak").warning("stopping: the current segment is dropped; --resume reruns it")
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        return await run_soak(settings, stop=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None, prog: str = "hif soak") -> int:
    args = parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = new_event_loop()
    try:
        settings = settings_from_args(args)
        summary = loop.run_until_complete(_run(settings))
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        loop.close()
    print(json.dumps(stdout_line(summary)), flush=True)
    print(f"hif: soak summary: {settings.results_dir / SOAK_SUMMARY_FILE}", file=sys.stderr)
    return EXIT_OK if summary["status"] == "finished" else EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
