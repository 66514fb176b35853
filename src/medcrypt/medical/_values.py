"""Value objects handed between medical IO and the rest of medcrypt: Volume, SliceChoice, Slice.

Conventions (see docs/internals.md):

* affines map voxel indices to world millimetres in nibabel's RAS+ convention
  (x to the patient's Right, y Anterior, z Superior), whatever the file format stored;
* a :class:`Slice` array is displayed radiologically: row 0 is anterior, column 0 is the
  patient's right (columns run towards the patient's left, rows towards posterior);
* ``Slice.window`` maps [0, 1] pixels back to source units: ``source = lo + x * (hi - lo)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TIE_RULE", "Slice", "SliceChoice", "Volume"]

#: The documented tie rule of :func:`medcrypt.medical.choose_slice`.
TIE_RULE = (
    "largest tumour area in mm^2 (compared as exact voxel counts, the in-plane voxel area "
    "being constant); ties go to the most inferior slice (lowest canonical index)"
)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image or label volume with its geometry.

    Attributes:
        array: the voxels in stored order, shape (n0, n1, n2).
        affine: 4x4 voxel -> world (RAS+, mm).
        spacing: voxel size along each array axis in mm (column norms of the affine).
        axcodes: nibabel axis codes, the direction each array axis points to (e.g. L,P,S).
        source: the file or folder it came from.
        meta: format-specific details (NIfTI space codes, DICOM UIDs, rescale, ...).
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    axcodes: tuple[str, str, str]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))


@dataclass(frozen=True)
class SliceChoice:
    """Which axial slice was chosen, and why.

    Attributes:
        axis: the stored array axis that is axial (closest to the superior direction).
        stored_index: index of the slice along ``axis`` in the stored array.
        canonical_index: the same slice counted inferior -> superior (0 = most inferior).
        area_mm2: tumour area of that slice in mm^2 (0.0 when chosen by a fallback).
        tied_indices: stored indices of every slice sharing the largest area, chosen one
            included (a single element when there is no tie).
        rule: the selection and tie rule that was applied.
        fallback: None when chosen by tumour area; otherwise what was done instead and why.
        world_position: world (RAS, mm) coordinates of the slice centre.
        n_slices: number of slices along ``axis``.
    """

    axis: int
    stored_index: int
    canonical_index: int
    area_mm2: float
    tied_indices: tuple[int, ...]
    rule: str
    fallback: str | None
    world_position: tuple[float, float, float]
    n_slices: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "axis": self.axis,
            "stored_index": self.stored_index,
            "canonical_index": self.canonical_index,
            "area_mm2": self.area_mm2,
            "tied_indices": list(self.tied_indices),
            "tie": len(self.tied_indices) > 1,
            "rule": self.rule,
            "fallback": self.fallback,
            "world_position": list(self.world_position),
            "n_slices": self.n_slices,
        }


@dataclass(frozen=True, eq=False)
class Slice:
    """One displayed 2D slice, normalised to [0, 1], and how to put it back.

    Attributes:
        array: 2D float32 in [0, 1], radiological display orientation (see module doc).
        choice: how the slice was chosen.
        affine: 4x4 mapping (column, row, 0, 1) of ``array`` to world (RAS, mm); its third
            column is the slice normal (pointing superior) scaled by the slice spacing.
        window: (lo, hi) in source units; ``source = lo + x * (hi - lo)``.
        source: the image file or folder it came from.
    """

    array: np.ndarray
    choice: SliceChoice
    affine: np.ndarray
    window: tuple[float, float]
    source: str

    def to_source_units(self, array01: np.ndarray | None = None) -> np.ndarray:
        """Map [0, 1] pixels (default: this slice's own) back to source units (float64)."""
        a = self.array if array01 is None else array01
        lo, hi = self.window
        return lo + np.asarray(a, dtype=np.float64) * (hi - lo)
