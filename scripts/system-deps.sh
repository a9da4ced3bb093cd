#!/usr/bin/env bash
# Debian packages the tests use: redis-server (distributed mode), prometheus/promtool (the
# dashboard and alert-rule checks), chromium (browser tests) and the text the featureset corpus
# reads (fortunes, jargon-text, debian-faq, fortune-anarchism: see docs/featuresets.md), and a C
# compiler with Python's headers (gcc, libc6-dev, python3-dev) for the load runner's C SSE reader,
# which scripts/setup.sh builds (setup.py). Installed only when missing.
# Without root nothing is installed: the tests that need a missing tool skip, naming the package,
# except under CI=true, where they fail (a skip there would hide a broken setup).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -f /usr/share/games/fortunes/cookie ] || missing+=(fortunes)
[ -f /usr/share/games/fortunes/anarchism ] || missing+=(fortune-anarchism)
[ -f /usr/share/doc/jargon-text/jargon.txt.gz ] || missing+=(jargon-text)
[ -f /usr/share/doc/debian/FAQ/debian-faq.en.txt.gz ] || missing+=(debian-faq)
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
"${PYTHON:-python3}" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null \
    || missing+=(python3-dev)
if [ ${#missing[@]} -eq 0 ]; then
    echo "system-deps: redis-server, prometheus, chromium, the corpus packages, gcc and Python headers present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: not root; missing ${missing[*]} (tests needing them will skip; under CI=true, fail)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packages' own services from starting: tests start their own on loopback.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system-deps: installed ${missing[*]}"
