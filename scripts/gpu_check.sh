#!/usr/bin/env bash
# Issue 2's GPU checks in ONE device run. Nothing can be fetched on the device machine, so:
#
#   bash scripts/gpu_check.sh --prepare     # here (registry reachable): cp312 wheels, ~8 MB,
#                                           # into .gpu-wheels/ (git-ignored)
#   bash scripts/gpu_check.sh               # there, through the device tool, carrying
#                                           # ".gpu-wheels"; figures land in $OUT
#   GPU_CHECK_PROTECTION=1 bash scripts/gpu_check.sh   # also the 320x320 protection sweep
#                                           # (eps 2.0 = the paper's 44 dB, 5.7 = 35 dB)
#   GPU_CHECK_FIGSHARE=1 FIGSHARE_DATA=<figshare-btd folder> bash scripts/gpu_check.sh
#                                           # also issue 14's figshare frontier at 256x256
#                                           # (the data is not in the tree: carry or mount it)
#
# The device image's python3 (3.12) already holds CUDA torch, numpy, scipy, scikit-image,
# Pillow, PyYAML and pytest. medcrypt's processing package and its phantoms need only the
# wheels below on top: SimpleITK, ray and boto3 are not imported by them.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${GPU_CHECK_WHEELS:-.gpu-wheels}
PY=${PYTHON:-python3}
PINS=(pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing_extensions==4.16.0 nibabel==5.4.2 pydicom==3.0.2 torchattacks==3.5.1)

if [ "${1:-}" = "--prepare" ]; then
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$PY" -m pip download -q --disable-pip-version-check --dest "$WHEELS" --only-binary=:all: \
    --python-version 3.12 --platform manylinux2014_x86_64 --no-deps "${PINS[@]}"
  ls -l "$WHEELS"
  exit 0
fi

if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  echo "gpu_check: no wheels in $WHEELS; run 'bash scripts/gpu_check.sh --prepare' first" >&2
  exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  echo "gpu_check: the carried wheels are for Python 3.12, this is $("$PY" -V)" >&2
  exit 2
fi
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
SITE=$(mktemp -d)
"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$SITE" \
  "$WHEELS"/*.whl
export PYTHONPATH="$PWD/src:$SITE" RAY_USAGE_STATS_ENABLED=0

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
} 2>&1 | tee "$OUT/gpu.txt"
# the CUDA test (bf16 + channels_last PGD reaches its targets, within budget)
"$PY" -m pytest -q -m gpu tests/unit/processing/test_pgd.py -p no:cacheprovider 2>&1 |
  tee "$OUT/gpu_tests.txt"
# paper scale: ResNet-18 width 64, 320x320, 2 targets, 100 iterations; bf16 vs torchattacks fp32,
# then both fp32 (what bf16 itself buys)
"$PY" benchmarks/pgd_throughput.py --device cuda --paper --repeats 3 2>&1 | tee "$OUT/pgd_paper.txt"
"$PY" benchmarks/pgd_throughput.py --device cuda --paper --repeats 3 --precision fp32 2>&1 |
  tee "$OUT/pgd_paper_fp32.txt"
"$PY" benchmarks/bf16_passes.py --device cuda --configs 64x320x64 64x320x128 2>&1 |
  tee "$OUT/bf16_passes.txt"
if [ "${GPU_CHECK_PROTECTION:-0}" = 1 ]; then
  timeout 420 "$PY" benchmarks/protection_report.py --device cuda --size 320 --base-width 64 \
    --base-epochs 20 --width 64 --key basic --eps 2.0,5.7 --iters 100 --n-per-class 100 \
    --n-test-per-class 30 --epochs 8 --out "$OUT/protection_320" 2>&1 |
    grep -v "_training" | tee "$OUT/protection_320.txt" || echo "protection sweep: exit $?"
fi
if [ "${GPU_CHECK_FIGSHARE:-0}" = 1 ]; then
  timeout 540 "$PY" benchmarks/protection_figshare.py --part frontier --device cuda --size 256 \
    --data "${FIGSHARE_DATA:-../shared/data/figshare-btd}" --base-width 64 --base-epochs 20 \
    --width 32 --epochs 15 --shift 16 --iters 100 --poison-iters 100 --restarts 4 \
    --psnr 40,35,30 --deadline 8 --out "$OUT/figshare_256" 2>&1 |
    tee "$OUT/figshare_256.txt" || echo "figshare sweep: exit $?"
fi
echo "gpu_check: figures in $OUT"
