"""``hif gateway``: run the OpenAI-compatible gateway alone (``hif serve`` adds the explainer)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TypeVar

from hif.config import add_options, build
from hif.errors import HifError
from hif.explainer.settings import FeaturesetSettings, SlaSettings
from hif.gateway.settings import GatewaySettings
from hif.store.settings import StoreSettings
from hif.upstream.settings import SimulatorSettings

T = TypeVar("T")
SETTINGS = (GatewaySettings, SimulatorSettings, StoreSettings, SlaSettings, FeaturesetSettings)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hif gateway", description="Run the HIF gateway.")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file (flags and HIF_* env win)")
    add_options(p, *SETTINGS)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:

        def make(cls: type[T]) -> T:
            return build(cls, cli=args, file=args.config)

        gateway, sim = make(GatewaySettings), make(SimulatorSettings)
        store, sla, fs = make(StoreSettings), make(SlaSettings), make(FeaturesetSettings)
        logging.basicConfig(
            level=gateway.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        # botocore narrates every credential lookup at INFO; a failed start-up should read as one line.
        logging.getLogger("botocore").setLevel(max(logging.WARNING, logging.getLogger().level))
        from hif.gateway.server import run_gateway

        run_gateway(gateway, store=store, sla=sla, featuresets=fs, simulator=sim)
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return 2
    return 0
