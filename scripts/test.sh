#!/usr/bin/env bash
# Set up everything (system packages, .venv) and run the whole test suite; arguments go to pytest.
#
#   bash scripts/test.sh                       # everything, with the 25 slowest tests listed
#   bash scripts/test.sh tests/unit -x -q      # a part
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
bash scripts/saelens-venv.sh || echo "test.sh: SAELens venv not made; its test skips (fails under CI=true)" >&2
.venv/bin/python -m pytest --durations=25 "$@"
