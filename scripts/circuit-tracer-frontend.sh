#!/usr/bin/env bash
# Test-only: circuit-tracer's frontend (its pydantic graph Model and the viewer's assets, MIT) in
# .cache/circuit-tracer/, never installed, plus the browser libraries its index.html loads from CDNs
# (d3 7, d3-jetpack, d3-collection, dagre, pako: BSD/MIT, from npm, integrity-pinned) in vendor/, so
# tests/integration/test_circuit_tracer_frontend.py can render our graphs in it without a network.
# The package pins transformers<=4.57.3 and pulls
# transformer-lens and nnsight, so it stays out of the runtime environment: the wheel is fetched
# with --no-deps and only circuit_tracer/frontend/ is unpacked. The graph tests import
# circuit_tracer.frontend.graph_models from there (tests/graph_formats.py); under CI=true a
# missing copy fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.5.0
STAMP="$VERSION+vendor1"
DEST=.cache/circuit-tracer
# npm package, version, file inside the tarball, sha512 integrity (as `npm view PKG@VER dist.integrity`)
VENDOR=(
    "d3 7.9.0 package/dist/d3.js sha512-e1U46jVP+w7Iut8Jt8ri1YsPOvFpg46k+K8TpCb0P+zjCkjkPnV7WzfDJzMHy1LnA+wj5pLT1wjO901gLXeEhA=="
    "d3-jetpack 2.3.0 package/build/d3-jetpack.cjs sha512-P6cgpLIKudalA5sohATXeZ78fHWcmXbAyPXYNIvxi8lc6qjRaNMggx1O/tcdIBTyTM26pTMpHPJI0N1FhPIzTg=="
    "d3-collection 1.0.7 package/dist/d3-collection.js sha512-ii0/r5f4sjKNTfh84Di+DpztYwqKhEyUlKoPrzUFfeSkWxjW49xU2QzO9qrPrNkpdI0XJkfzvmTu8V2Zylln6A=="
    "dagre 0.8.5 package/dist/dagre.min.js sha512-/aTqmnRta7x7MCCpExk7HQL2O4owCT2h8NT//9I1OQ9vt29Pa0BzSAkR5lwFUcQ7491yVi/3CXU9jQ5o0Mn2Sw=="
    "pako 2.1.0 package/dist/pako.min.js sha512-w+eufiZ1WuJYgPXbV/PO3NCMEc3xqylkKHzp8bxp1uW4qaSNQUkwmLLEc3kKsfz8lpV1F8Ht3U1Cm+9Srog2ug=="
)
if [ -f "$DEST/circuit_tracer/frontend/graph_models.py" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$STAMP" ]; then
    echo "circuit-tracer-frontend: $VERSION present in $DEST"
    exit 0
fi
PYTHON=${PYTHON:-.venv/bin/python}
command -v npm >/dev/null 2>&1 || { echo "circuit-tracer-frontend: npm is needed to fetch the viewer libraries" >&2; exit 1; }
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
mkdir -p "$DEST/vendor"
for entry in "${VENDOR[@]}"; do
    read -r name version member integrity <<< "$entry"
    tarball="$tmp/$name-$version.tgz"
    (cd "$tmp" && npm pack --silent "$name@$version" >/dev/null)
    "$PYTHON" - "$tarball" "$member" "$integrity" "$DEST/vendor" <<'PY'
import base64
import hashlib
import sys
import tarfile
from pathlib import Path

tarball, member, integrity, dest = sys.argv[1:]
data = Path(tarball).read_bytes()
digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
if digest != integrity:
    sys.exit(f"{tarball}: integrity {digest} is not the pinned {integrity}")
with tarfile.open(tarball) as tf:
    (Path(dest) / Path(member).name).write_bytes(tf.extractfile(member).read())
PY
done
echo "$STAMP" > "$DEST/VERSION"
echo "circuit-tracer-frontend: $VERSION and its browser libraries unpacked into $DEST"
