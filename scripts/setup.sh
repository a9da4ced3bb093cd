#!/usr/bin/env bash
# Create .venv and install HIF with everything it runs and tests with.
# torch==2.13.0 goes first so pip takes the CPU build (2.13.0+cpu sorts above 2.13.0 where the
# configured indexes hold both); a later, looser requirement is then already met. Where they hold
# only PyPI, set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (PyPI's Linux wheel is the
# multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${PIP[@]}" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} torch==2.13.0
# Editable: setup.py builds the load runner's C SSE reader in place (hif/harness/load/_sse*.so), so
# it imports with PYTHONPATH=<repo> too. Optional: without gcc and Python's headers the install
# goes on and streamed load runs use the slower pure-Python reader.
"${PIP[@]}" -e '.[all,dev]'
.venv/bin/python -c 'import hif.harness.load._sse' 2>/dev/null \
    || echo "setup: the C SSE reader was not built (gcc, python3-dev: scripts/system-deps.sh); streamed load runs use the pure-Python reader, and its CI test fails" >&2
# Test-only copy of circuit-tracer's frontend (graph Model, viewer assets), outside the venv. Not
# fatal here: without it only the graph-format tests skip (and fail under CI=true, naming the script).
PYTHON=.venv/bin/python bash scripts/circuit-tracer-frontend.sh \
    || echo "setup: circuit-tracer frontend not fetched (run scripts/circuit-tracer-frontend.sh)" >&2
echo "setup: .venv ready ($(.venv/bin/python -c 'import hif, torch; print("hif", hif.__version__, "torch", torch.__version__)'))"
