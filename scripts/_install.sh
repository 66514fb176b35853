# Sourced by scripts/demo.sh and scripts/test.sh: a project venv with the pinned torch.
# torch==2.13.0 is a CPU build that this project's machines serve from local disk in
# seconds; GPU users: install the CUDA torch build of your choice into the venv first
# (see README, "Installing on a GPU machine") and set MEDCRYPT_TORCH=skip.
set -euo pipefail
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
if [ "${MEDCRYPT_TORCH:-pinned}" != "skip" ]; then
  python -m pip install -q --disable-pip-version-check "torch==2.13.0"
fi
python -m pip install -q --disable-pip-version-check -e ".[${MEDCRYPT_EXTRAS:-dev}]"
