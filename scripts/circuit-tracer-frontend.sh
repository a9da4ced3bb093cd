#!/usr/bin/env bash
# Test-only: circuit-tracer's frontend (its pydantic graph Model and the viewer's assets, MIT) in
# .cache/circuit-tracer/, never installed. The package pins transformers<=4.57.3 and pulls
# transformer-lens and nnsight, so it stays out of the runtime environment: the wheel is fetched
# with --no-deps and only circuit_tracer/frontend/ is unpacked. The graph tests import
# circuit_tracer.frontend.graph_models from there (tests/graph_formats.py); under CI=true a
# missing copy fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.5.0
DEST=.cache/circuit-tracer
if [ -f "$DEST/circuit_tracer/frontend/graph_models.py" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
    echo "circuit-tracer-frontend: $VERSION present in $DEST"
    exit 0
fi
PYTHON=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps "circuit-tracer==$VERSION" -d "$tmp"
rm -rf "$DEST"
mkdir -p "$DEST/circuit_tracer"
"$PYTHON" - "$tmp"/circuit_tracer-"$VERSION"-*.whl "$DEST" <<'PY'
import sys
import zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    wanted = [n for n in zf.namelist() if n.startswith("circuit_tracer/frontend/") or n.endswith("LICENSE")]
    zf.extractall(dest, members=wanted)
PY
# The frontend package alone: an empty parent package keeps `import circuit_tracer` from loading torch.
: > "$DEST/circuit_tracer/__init__.py"
echo "$VERSION" > "$DEST/VERSION"
echo "circuit-tracer-frontend: $VERSION unpacked into $DEST"
