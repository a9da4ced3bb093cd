"""``hif upstream-sim``: serve the LLM simulator as its own OpenAI-compatible HTTP server."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hif.config import add_options, build
from hif.errors import HifError
from hif.upstream.settings import SimulatorSettings, UpstreamSimSettings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hif upstream-sim", description="Serve the upstream LLM simulator.")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    add_options(p, UpstreamSimSettings, SimulatorSettings)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        where = build(UpstreamSimSettings, cli=args, file=args.config)
        sim = build(SimulatorSettings, cli=args, file=args.config)
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from hif.upstream.server import run_simulator

    run_simulator(where, sim)
    return 0
