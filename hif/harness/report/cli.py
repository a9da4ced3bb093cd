"""``hif report`` / ``python -m tests.load.report``: report.json + report.md (+ charts) from results.

    hif report --results-dir tests/load/results
    hif report --results-dir shard1 shard2 shard3 --out-dir merged \\
        --metrics-url-gateway http://localhost:9091/metrics --metrics-url-explainer http://localhost:9090/metrics

Prints one JSON line (where the files went, headline figures); bad input is one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from hif.errors import HarnessError, HifError
from hif.harness.records import REPORT_JSON_FILE, REPORT_MD_FILE
from hif.harness.report.run import ReportSettings, run_report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise HarnessError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hif report", description="Render report.json and report.md from load/soak results.")
    p.add_argument(
        "--results-dir",
        type=Path,
        nargs="+",
        action="extend",
        required=True,
        help="one or more results dirs (shards are merged exactly)",
    )
    p.add_argument(
        "--out-dir", type=Path, default=None, help="where report.* go (default: the first results dir)"
    )
    p.add_argument(
        "--metrics-url-gateway", default=None, help="gateway Prometheus endpoint, e.g. :9091/metrics"
    )
    p.add_argument(
        "--metrics-url-explainer", default=None, help="explainer Prometheus endpoint, e.g. :9090/metrics"
    )
    p.add_argument(
        "--chaos-path",
        type=Path,
        default=None,
        help="chaos control file for the snapshot (default: CHAOS_CONTROL_PATH or /tmp/hif/chaos.json)",
    )
    p.add_argument("--jobs", type=int, default=0, help="scan processes (default: one per core)")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    return p


def settings_from_args(args: argparse.Namespace) -> ReportSettings:
    if args.jobs < 0:
        raise HarnessError(f"--jobs must be >= 0, got {args.jobs}")
    return ReportSettings(
        results_dirs=tuple(args.results_dir),
        out_dir=args.out_dir,
        metrics_url_gateway=args.metrics_url_gateway,
        metrics_url_explainer=args.metrics_url_explainer,
        chaos_path=args.chaos_path,
        jobs=args.jobs,
        charts=not args.no_charts,
    )


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
            "slo_pass": data["slo"]["pass"],
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
    print(one_line(data, settings.out_dir or settings.results_dirs[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
