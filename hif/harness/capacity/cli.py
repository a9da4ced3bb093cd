"""``hif capacity`` / ``python -m tests.load.capacity``: flags -> CapacitySettings -> run_capacity.

    hif capacity --base-url http://localhost:8080 --slo chat_p95_ms=500 --slo sentence_p95_ms=1500 \\
        --attach-rates 0,0.1,0.3 --rate-min 5 --rate-max 80 --step-seconds 15

Exit codes: 0 the search finished, 1 even the lowest step broke a gate (or no step at any rate had
samples enough to pass), 2 bad flags or a failed
pre-flight, 3 the generator could not offer the rates asked, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import NoReturn

from hif.config import add_options, build
from hif.errors import HarnessError, HifError
from hif.harness.capacity import markdown
from hif.harness.capacity.run import CAPACITY_JSON_FILE, run_capacity_sync
from hif.harness.capacity.settings import CapacitySettings

EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise HarnessError(message)


def build_parser(prog: str = "hif capacity") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Search the highest open-loop rate at which every SLO gate holds.")
    add_options(p, CapacitySettings)
    p.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="SLO gate, repeatable: chat_p95_ms, error_rate, sentence_p95_ms, token_p95_ms, "
        "expired_failed_rate",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="TOML file with these options (table [capacity])"
    )
    return p


def frontier_lines(data: dict[str, object]) -> list[str]:
    """One line per attach rate: the highest passing rate and the SLO that broke above it."""
    out = []
    for f in data["frontier"]:  # type: ignore[attr-defined]
        rate = f"{f['rate_rps']:.1f} req/s" if f["rate_rps"] is not None else markdown.none_passed(f)
        where = f"attach {f['attach_rate']:g}"
        if f.get("prompt_tokens") is not None:
            where += f", {f['prompt_tokens']}-token prompts"
        out.append(f"{where}: {rate}; first to break: {f['first_broken'] or 'none'}")
    return out


def main(argv: list[str] | None = None, prog: str = "hif capacity") -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser(prog).parse_args(argv)
        settings = dataclasses.replace(
            build(CapacitySettings, cli=args, file=args.config), slo=tuple(args.slo)
        )
        data = run_capacity_sync(settings)
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("hif: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in frontier_lines(data):
        print(f"hif: {line}", file=sys.stderr)
    print(
        json.dumps(
            {
                "capacity_json": str(settings.results_dir / CAPACITY_JSON_FILE),
                "status": data["status"],
                "frontier": data["frontier"],
                "exit_code": data["exit_code"],
            }
        )
    )
    return int(data["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
