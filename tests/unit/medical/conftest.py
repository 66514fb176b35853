"""Fixtures for medical IO tests: the real BraTS volumes, each read once per session."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

IMAGE = "T1c_subtrMeanDivStd.nii.gz"
MASK = "OTMultiClass.nii.gz"


@dataclass(frozen=True)
class BratsCase:
    """One real case read directly with nibabel (independently of medcrypt)."""

    case_id: str
    folder: Path
    image_path: Path
    mask_path: Path
    affine: np.ndarray

    def image(self) -> np.ndarray:
        return _read(self.image_path)

    def mask(self) -> np.ndarray:
        return _read(self.mask_path)


@cache
def _read(path: Path) -> np.ndarray:
    arr = np.asarray(nib.load(str(path)).dataobj)
    arr.setflags(write=False)
    return arr


@pytest.fixture(scope="session")
def brats(brats_cases: list[Path]) -> list[BratsCase]:
    """The four BraTS cases; voxels are read lazily and cached for the session."""
    out = []
    for folder in brats_cases:
        img = folder / IMAGE
        out.append(
            BratsCase(
                case_id=folder.name,
                folder=folder,
                image_path=img,
                mask_path=folder / MASK,
                affine=np.asarray(nib.load(str(img)).affine, dtype=np.float64),
            )
        )
    return out
