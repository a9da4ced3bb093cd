"""``hif explainer``: run the explainer worker processes against the job queue.

hif explainer --workers 2 --explainer-metrics-port 9090 --data-dir /tmp/hif/data
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hif.config import add_options, build
from hif.errors import HifError
from hif.explainer.service.supervisor import run_explainer
from hif.explainer.settings import ExplainerSettings, FeaturesetSettings, SlaSettings
from hif.store.settings import StoreSettings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hif explainer", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    add_options(p, ExplainerSettings, StoreSettings, SlaSettings, FeaturesetSettings)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = args.config
        settings = build(ExplainerSettings, cli=args, file=config)
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(asctime)s explainer %(levelname)s %(message)s"
        )
        run_explainer(
            settings,
            build(SlaSettings, cli=args, file=config),
            build(StoreSettings, cli=args, file=config),
            build(FeaturesetSettings, cli=args, file=config),
        )
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return 2
    return 0
