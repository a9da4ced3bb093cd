"""``hif report`` / ``python -m tests.load.report``: report.json + report.md (+ charts) from results.

    hif report --results-dir tests/load/results
    hif report --results-dir shard1 shard2 shard3 --out-dir merged \\
        --metrics-url-gateway http://localhost:9091/metrics --metrics-url-explainer http://localhost:9090/metrics

Prints one JSON line (where the files went, headline figures); bad input is one line, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from hif.config import add_options, build
from hif.errors import HarnessError, HifError
from hif.harness.load.settings import DEFAULT_RESULTS_DIR
from hif.harness.records import REPORT_JSON_FILE, REPORT_MD_FILE
from hif.harness.report.run import run_report
from hif.harness.report.settings import ReportSettings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise HarnessError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hif report", description="Render report.json and report.md from load/soak results.")
    p.add_argument(
        "--results-dir",
        dest="results_dirs",
        metavar="DIR",
        type=Path,
        nargs="+",
        action="extend",
        default=None,
        help=f"one or more results dirs (shards are merged exactly; default: {DEFAULT_RESULTS_DIR}, "
        "where the load runner writes)",
    )
    add_options(p, ReportSettings)
    p.add_argument("--config", type=Path, default=None, help="TOML file with these options (table [report])")
    return p


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> ReportSettings:
    """Flags > ``HIF_*`` env (``os.environ`` unless given) > ``--config`` file > defaults."""
    settings = build(ReportSettings, cli=args, env=env, file=args.config)
    return dataclasses.replace(settings, results_dirs=tuple(args.results_dirs or (DEFAULT_RESULTS_DIR,)))


def one_line(data: dict[str, Any], out_dir: Path) -> str:
    chat, expl = data["chat"], data["explanations"]
    return json.dumps(
        {
            "report_json": str(out_dir / REPORT_JSON_FILE),
            "report_md": str(out_dir / REPORT_MD_FILE),
            "chat_requests": chat["requests"],
            "chat_rps": chat["rps"],
            "chat_p95_ms": chat["latency_ms"]["p95_ms"],
            "error_rate": chat["error_rate"],
            "sentence_p95_ms": expl["sla_ms"]["sentence"]["p95_ms"],
            "token_p95_ms": expl["sla_ms"]["token"]["p95_ms"],
            "slo_pass": data["slo"]["pass"],  # null: not gated
            "warnings": data["inputs"].get("warnings", []),
            "corrupt_lines": sum(data["inputs"]["corrupt_lines"].values()),
            "chaos_windows": len(data["chaos"]["windows"]),
        }
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = settings_from_args(build_parser().parse_args(argv))
        data = run_report(settings)
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    for warning in data["inputs"].get("warnings", []):
        print(f"hif: warning: {warning}", file=sys.stderr)
    print(one_line(data, settings.out_dir or settings.results_dirs[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
