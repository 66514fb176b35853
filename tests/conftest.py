"""Shared test fixtures: paths to the real data, GPU skipping, small deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No Ray usage-stats collection in tests: it runs background threads that query a Prometheus
# server the tests do not have, and threads alive during ast.parse trip a CPython 3.11 bug
# (see tests/test_architecture.py). Set before any test starts Ray; the workers inherit it.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]
#: Real BraTS cases, used by path and never copied into the repo (see ../shared/data/README.md).
BRATS = ROOT.parent / "shared" / "data" / "brats2015-sample"
BRATS_CASES = sorted(p for p in BRATS.glob("brats_*") if p.is_dir()) if BRATS.is_dir() else []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def brats_cases() -> list[Path]:
    """The four real BraTS case folders; fails loudly if the shared data is missing."""
    if len(BRATS_CASES) != 4:
        pytest.fail(f"expected 4 BraTS cases under {BRATS}, found {len(BRATS_CASES)}")
    return BRATS_CASES
