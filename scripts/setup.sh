#!/usr/bin/env bash
# Create .venv and install HIF with everything it runs and tests with.
# torch==2.13.0 goes first so pip takes the CPU build; a later, looser requirement is then already met.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all,dev]'
echo "setup: .venv ready ($(.venv/bin/python -c 'import hif, torch; print("hif", hif.__version__, "torch", torch.__version__)'))"
