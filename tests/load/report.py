"""Runbook entry point: ``python -m tests.load.report --results-dir tests/load/results``.

Also runs as ``python tests/load/report.py ...`` from the repo root. The work is in
:func:`hif.harness.report_main` (``hif report``).
"""

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hif.harness import report_main as main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
