#!/usr/bin/env bash
# Test-only: SAELens in its own venv (.cache/saelens-venv), so tests/integration/test_saelens.py can
# load the shipped SAEs with SAELens' own loader without a network at test time. SAELens pulls a
# large dependency tree, so it never enters the project's .venv; --system-site-packages reuses
# the project's torch. Made once, reused after; a failure here is reported, not fatal (the test
# then skips, or fails under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/saelens-venv
PYTHON=${PYTHON:-.venv/bin/python}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import sae_lens" 2>/dev/null; then
    echo "saelens-venv: present in $VENV"
    exit 0
fi
mkdir -p .cache
"$PYTHON" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check sae-lens
echo "saelens-venv: sae-lens installed in $VENV"
