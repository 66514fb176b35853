#!/usr/bin/env bash
# Fresh machine -> install, then run the demo: archive job, protection evaluation, reader-study
# packets; it ends by printing the page to open, <out>/report.html (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
MEDCRYPT_EXTRAS=dev source scripts/_install.sh
medcrypt demo --out "${1:-demo-out}"
