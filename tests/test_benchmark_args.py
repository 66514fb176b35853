"""The benchmarks' own argument checks: a bad budget list is refused before any work."""

from __future__ import annotations

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
