"""How operators start medcrypt: console script, ``python -m``, the ``ray submit`` script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_python_dash_m_is_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "medcrypt", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("medcrypt, version ")


@pytest.mark.timeout(120)
def test_ray_submit_script_runs_encrypt() -> None:
    script = ROOT / "scripts" / "ray_job.py"
    out = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True
    )
    assert "Usage: medcrypt encrypt" in out.stdout and "--dry-run" in out.stdout
    bad = subprocess.run(
        [sys.executable, str(script), "--source", "s3://", "--dest", "/tmp/x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "error" in bad.stderr.lower()
