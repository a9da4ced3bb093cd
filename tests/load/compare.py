"""Runbook entry point: ``python -m tests.load.compare A B`` (or ``python tests/load/compare.py``).

A thin shell over :func:`hif.harness.compare_main` (also ``hif compare``); see docs/compare.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hif.harness import compare_main as main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tests.load.compare"))
