"""The benchmarks' own argument checks (bad input is refused before any work), and a tiny run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("eps", "message"),
    [
        ("1.1,x", "expected numbers separated by commas, got '1.1,x'"),
        ("1.1,-2", "expected positive budgets, got '1.1,-2'"),
        (",", "expected positive budgets, got ','"),
    ],
)
@pytest.mark.parametrize("script", ["protection_report.py", "protection_brats.py"])
def test_protection_benchmarks_refuse_a_bad_eps_list(script: str, eps: str, message: str) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--eps", eps],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert "argument --eps" in res.stderr and message in res.stderr


def test_bf16_passes_refuses_a_bad_config_and_times_a_tiny_one() -> None:
    script = str(ROOT / "benchmarks" / "bf16_passes.py")
    bad = subprocess.run(
        [sys.executable, script, "--configs", "8x64"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "expected WIDTHxSIZExROWS, got '8x64'" in bad.stderr
    ok = subprocess.run(
        [sys.executable, script, "--threads", "1", "--repeats", "1", "--configs", "4x32x4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    line = ok.stdout.strip().splitlines()[-1]
    assert "width   4,   4 rows of 32x32" in line and "ratio" in line
    cosine = float(line.rsplit("gradient cosine", 1)[1])
    assert cosine > 0.9  # bf16 input gradients point where fp32 ones do


def test_protection_levers_refuses_an_unknown_key_before_training() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "protection_levers.py"), "--keys", "basic,x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert "unknown key 'x': expected basic, paper, paper-region or permA-B-.." in res.stderr
    assert "base " not in res.stdout  # refused before any base model was trained


def test_protection_levers_refuses_universal_with_a_two_target_key() -> None:
    script = str(ROOT / "benchmarks" / "protection_levers.py")
    res = subprocess.run(
        [sys.executable, script, "--universal", "5", "--keys", "basic,paper"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert "--universal takes one-target keys only (basic, permA-B-..)" in res.stderr
    assert "base " not in res.stdout


def test_gpu_check_refuses_missing_wheels_and_a_wrong_python(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "gpu_check.sh")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_WHEELS": str(tmp_path)}
    res = subprocess.run(["bash", script], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2
    assert f"no wheels in {tmp_path}; run 'bash scripts/gpu_check.sh --prepare' first" in res.stderr
    if sys.version_info[:2] == (3, 12):
        return  # the wheels' own Python: the version check has nothing to refuse
    (tmp_path / "pkg-1.0-py3-none-any.whl").write_bytes(b"")
    res = subprocess.run(["bash", script], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"the carried wheels are for Python 3.12, this is Python {version}" in res.stderr


def _load_benchmark(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_protection_brats_labels_slices_by_the_segmentation(
    brats_cases: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as running it as a script does
    bench: Any = _load_benchmark("protection_brats")
    case = brats_cases[0]
    x, y = bench.case_slices(case, size=32, min_area=100, min_brain=3000)
    # The same rule, counted straight from the files: brain >= 3000 px, tumour 0 or > 100 px.
    seg: Any = nib.load(case / "OTMultiClass.nii.gz")
    mask: Any = nib.load(case / "brainmask.nii.gz")
    area = (np.asarray(seg.dataobj) > 0).sum((0, 1))
    brain = (np.asarray(mask.dataobj) > 0).sum((0, 1))
    kept = (brain >= 3000) & ~((area > 0) & (area <= 100))
    assert x.shape == (int(kept.sum()), 32, 32) and x.dtype == np.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    np.testing.assert_array_equal(y, (area[kept] > 100).astype(np.int64))
    assert 0 < y.sum() < len(y)  # both classes present in a real case


def test_protection_brats_refuses_a_folder_without_cases(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "protection_brats.py"), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert f"{tmp_path}: need at least two BraTS case folders, found 0" in res.stderr


def test_protection_brats_runs_one_tiny_fold(brats_cases: list[Path]) -> None:
    tiny = "--folds 1 --eps 1.1 --base-epochs 1 --epochs 1 --iters 2 --size 32 --width 4"
    script = str(ROOT / "benchmarks" / "protection_brats.py")
    data = str(brats_cases[0].parent)
    res = subprocess.run(
        [sys.executable, script, *tiny.split(), "--base-width", "4", "--data", data],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["held_out"] == brats_cases[1].name
    # An L2 budget of 1.1 on 32x32 pixels in [0, 1] bounds the mean PSNR from below.
    assert rows[0]["psnr"] >= 10 * np.log10(32 * 32 / 1.1**2)
    for arch in ("resnet18", "vgg11"):
        scores = rows[0][arch]
        assert all(0.0 <= scores[k] <= 1.0 for k in ("clean", "enc", "orig", "orig_peak"))
        assert len(scores["recall"]) == 2
    assert "| 1.1 |" in res.stdout.splitlines()[-2]


@pytest.mark.parametrize(
    ("folds", "message"),
    [
        ("1,x", "--folds: expected case indices separated by commas, got '1,x'"),
        ("0,4,-1", "--folds: [4, -1] not in 0..3 (4 cases found)"),
    ],
)
def test_protection_brats_refuses_bad_folds_before_reading(
    brats_cases: list[Path], folds: str, message: str
) -> None:
    script = str(ROOT / "benchmarks" / "protection_brats.py")
    data = str(brats_cases[0].parent)
    res = subprocess.run(
        [sys.executable, script, "--data", data, "--folds", folds],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert message in res.stderr
    assert "slices" not in res.stdout  # refused before any case was read


def test_foreground_masks_benchmark_refuses_a_bad_count_and_times_a_tiny_batch() -> None:
    script = str(ROOT / "benchmarks" / "foreground_masks.py")
    bad = subprocess.run(
        [sys.executable, script, "--n", "0"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "expected a positive integer, got '0'" in bad.stderr
    if not (ROOT.parent / "shared" / "data" / "figshare-btd" / "train").is_dir():
        pytest.skip("figshare-btd not found under ../shared/data")
    tiny = ["--n", "6", "--size", "32", "--repeats", "1"]
    ok = subprocess.run(
        [sys.executable, script, *tiny], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert "masks identical" in ok.stdout and ok.stdout.strip().splitlines()[-1].endswith("x")
