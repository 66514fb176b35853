"""Writing a protected slice back as NIfTI (2D in 3D, overlaying its source volume)."""

from __future__ import annotations

import numpy as np

from medcrypt.medical._nifti import encode_nifti_volume
from medcrypt.medical._values import Slice

__all__ = ["encode_nifti_slice"]


def _check_like(array01: np.ndarray, slice_: Slice) -> np.ndarray:
    a = np.asarray(array01, dtype=np.float64)
    if a.shape != slice_.array.shape:
        raise ValueError(
            f"expected an image of the slice's shape {slice_.array.shape}, got {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError("expected finite pixel values, got NaN or Inf")
    return np.clip(a, 0.0, 1.0)


def encode_nifti_slice(array01: np.ndarray, slice_: Slice) -> bytes:
    """A ``.nii.gz`` holding ``array01`` in source units, placed where the slice came from.

    The file is one voxel thick: voxel (i, j, 0) is display column i, row j, and the affine
    is ``slice_.affine`` (its third column is the slice normal times the slice spacing), so a
    viewer overlays it on the source volume at the chosen slice. Values are mapped back with
    the slice's window: ``lo + x * (hi - lo)`` (float32).
    """
    a = _check_like(array01, slice_)
    source_units = slice_.to_source_units(a).astype(np.float32)
    data = np.ascontiguousarray(source_units.T[:, :, np.newaxis])
    return encode_nifti_volume(data, slice_.affine, gz=True)
