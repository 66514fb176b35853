#!/usr/bin/env bash
# Fresh machine -> lint, type check and the whole test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_install.sh
# DICOM output is checked by real validators (dciodvfy from dicom3tools, dcmtk's dcmdump).
if ! command -v dciodvfy >/dev/null 2>&1 || ! command -v dcmdump >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dicom3tools dcmtk >/dev/null
fi
# The HTML pages are checked in a real browser: Debian's chromium, driven headless by
# Playwright for Python (no browser download: the test points Playwright at this binary).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "== ruff"; ruff check src tests benchmarks; ruff format --check src tests benchmarks
echo "== mypy"; mypy; mypy benchmarks
# the 15 slowest tests print at the end, so the next change sees what the suite spends time on
echo "== pytest"; pytest --durations=15 "$@"
