"""Runbook entry point: ``python -m tests.chaos.chaos_injector --enable slow-sae --percent 50``.

Also runs as ``python tests/chaos/chaos_injector.py ...`` from the repo root. The work is in
:func:`hif.harness.chaos_main` (``hif chaos``).
"""

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hif.harness import chaos_main as main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
