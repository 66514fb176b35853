#!/usr/bin/env bash
# Fresh machine -> install, then run the main job on its embedded default (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
MEDCRYPT_EXTRAS=dev source scripts/_install.sh
medcrypt demo --out "${1:-demo-out}"
