#!/usr/bin/env bash
# docs/report.png, the README's screenshot, from today's demo: `medcrypt demo --small` into a
# fixed folder (default demo-out/, the README's), then its run page in headless Chromium.
# The page must name no temp folder (a worker's download copy, a pytest folder): the script
# fails if it does. Needs Debian's chromium (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo-out}
MEDCRYPT_EXTRAS=dev source scripts/_install.sh
# a fresh local Ray: the demo would otherwise join a Ray cluster already running on this machine
rm -rf "$OUT"
RAY_ADDRESS=local medcrypt demo --small --out "$OUT"
python scripts/_screenshot.py "$OUT" docs/report.png
