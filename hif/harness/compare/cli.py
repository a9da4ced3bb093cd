"""``hif compare A B`` / ``python -m tests.load.compare A B``: compare.json + compare.md, exit code.

    hif compare runs/before runs/after --fail-on chat_p95_ms,sentence_p95_ms

Exit codes: 0 compared (nothing gated got worse), 1 a ``--fail-on`` metric got worse beyond noise,
2 bad flags, unreadable folders, or settings that differ (without ``--force``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import NoReturn

from hif.config import add_options, build
from hif.errors import HarnessError, HifError
from hif.harness.compare.run import COMPARE_JSON_FILE, run_compare
from hif.harness.compare.settings import CompareSettings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise HarnessError(message)


def build_parser(prog: str = "hif compare") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Compare two results folders metric by metric, beyond noise or not.")
    p.add_argument("baseline", type=Path, help="A: the baseline results folder")
    p.add_argument("candidate", type=Path, help="B: the results folder compared with A")
    add_options(p, CompareSettings)
    p.add_argument("--config", type=Path, default=None, help="TOML file with these options (table [compare])")
    return p


def main(argv: list[str] | None = None, prog: str = "hif compare") -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(prog).parse_args(argv)
        settings = dataclasses.replace(
            build(CompareSettings, cli=args, file=args.config),
            baseline=args.baseline,
            candidate=args.candidate,
        )
        data = run_compare(settings)
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    for diff in data["settings_differences"]:
        print(f"hif: warning: settings differ: {diff}", file=sys.stderr)
    out = settings.out_dir or settings.candidate
    print(
        json.dumps(
            {
                "compare_json": str(out / COMPARE_JSON_FILE),
                "worse": data["worse"],
                "better": data["better"],
                "failed": data["failed"],
                "exit_code": data["exit_code"],
            }
        )
    )
    return int(data["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
