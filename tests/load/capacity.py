"""Runbook entry point: ``python -m tests.load.capacity ...`` (or ``python tests/load/capacity.py``).

A thin shell over :func:`hif.harness.capacity_main` (also ``hif capacity``); see docs/capacity.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hif.harness import capacity_main as main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tests.load.capacity"))
