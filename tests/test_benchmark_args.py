"""The benchmarks' own argument checks (bad input is refused before any work), and a tiny run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
def test_protection_report_refuses_a_bad_eps_list(eps: str, message: str) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "protection_report.py"), "--eps", eps],
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
