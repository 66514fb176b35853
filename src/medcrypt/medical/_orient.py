"""Orientation arithmetic on affines: axial axis, display transform, re-orientation (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel import orientations as nio

__all__ = [
    "DisplayGeometry",
    "axcodes_of",
    "axial_axis",
    "display_geometry",
    "reorient",
    "spacing_of",
]


def axcodes_of(affine: np.ndarray) -> tuple[str, str, str]:
    """nibabel axis codes (e.g. ('L', 'P', 'S')): where each array axis points."""
    codes = nio.aff2axcodes(np.asarray(affine, dtype=np.float64))
    return (str(codes[0]), str(codes[1]), str(codes[2]))


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (column norms of the affine's 3x3 part)."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def _ornt(affine: np.ndarray) -> np.ndarray:
    """(world axis, direction) per array axis; world axes 0=x(R), 1=y(A), 2=z(S)."""
    return nio.io_orientation(np.asarray(affine, dtype=np.float64))


def axial_axis(affine: np.ndarray) -> tuple[int, bool]:
    """The stored array axis closest to the inferior-superior direction.

    Returns:
        ``(axis, points_superior)``: ``points_superior`` is True when increasing index moves
        towards the head (then canonical index == stored index).
    """
    ornt = _ornt(affine)
    (axes,) = np.nonzero(ornt[:, 0] == 2)
    if axes.size != 1:  # pragma: no cover - io_orientation always assigns each world axis once
        raise ValueError(f"cannot find a unique axial axis in affine {affine.tolist()}")
    axis = int(axes[0])
    return axis, bool(ornt[axis, 1] > 0)


@dataclass(frozen=True)
class DisplayGeometry:
    """How to turn stored plane ``index`` along ``axis`` into a radiological display image.

    ``plane`` is ``array.take(index, axis)`` (remaining axes in stored order).
    ``to_display(plane)`` returns rows towards posterior and columns towards patient left;
    ``affine`` maps (column, row, 0, 1) of the displayed image to world (RAS, mm).
    """

    axis: int
    index: int
    transpose: bool
    flip_rows: bool
    flip_cols: bool
    affine: np.ndarray

    def to_display(self, plane: np.ndarray) -> np.ndarray:
        out = plane.T if self.transpose else plane
        if self.flip_rows:
            out = out[::-1, :]
        if self.flip_cols:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def from_display(self, display: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_display`: back to the stored plane's axis order."""
        out = display
        if self.flip_cols:
            out = out[:, ::-1]
        if self.flip_rows:
            out = out[::-1, :]
        out = out.T if self.transpose else out
        return np.ascontiguousarray(out)


def display_geometry(
    affine: np.ndarray, shape: tuple[int, ...], axis: int, index: int
) -> DisplayGeometry:
    """Display transform and 2D-in-3D affine of plane ``index`` along ``axis``.

    Columns of the displayed image follow the stored in-plane axis closest to left-right,
    increasing towards the patient's left; rows follow the axis closest to anterior-posterior,
    increasing towards posterior (radiological convention, as in DICOM axial images).
    """
    aff = np.asarray(affine, dtype=np.float64)
    ornt = _ornt(aff)
    in_plane = [a for a in range(3) if a != axis]
    col_axis = next(a for a in in_plane if ornt[a, 0] == 0)
    row_axis = next(a for a in in_plane if ornt[a, 0] == 1)
    flip_cols = bool(ornt[col_axis, 1] > 0)  # stored axis points Right: reverse it
    flip_rows = bool(ornt[row_axis, 1] > 0)  # stored axis points Anterior: reverse it
    sup = bool(ornt[axis, 1] > 0)
    # M maps (col, row, z, 1) of the display to stored voxel indices.
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    if flip_cols:
        m[col_axis, 0], m[col_axis, 3] = -1.0, shape[col_axis] - 1.0
    else:
        m[col_axis, 0] = 1.0
    if flip_rows:
        m[row_axis, 1], m[row_axis, 3] = -1.0, shape[row_axis] - 1.0
    else:
        m[row_axis, 1] = 1.0
    m[axis, 2] = 1.0 if sup else -1.0  # third column points superior
    m[axis, 3] = float(index)
    # plane = array.take(index, axis) keeps the remaining axes in stored order
    # (in_plane[0], in_plane[1]); display rows must be row_axis.
    transpose = in_plane[0] != row_axis
    return DisplayGeometry(
        axis=axis,
        index=int(index),
        transpose=transpose,
        flip_rows=flip_rows,
        flip_cols=flip_cols,
        affine=aff @ m,
    )


def reorient(
    array: np.ndarray, affine: np.ndarray, axcodes: str | tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Re-store ``array`` so its axes point to ``axcodes`` (e.g. "IAL"); same world content.

    Returns the re-ordered array (a copy) and the matching affine: every voxel keeps its
    world position.
    """
    aff = np.asarray(affine, dtype=np.float64)
    target = tuple(axcodes)
    if len(target) != 3:
        raise ValueError(f"expected three axis codes like 'LPS', got {axcodes!r}")
    transform = nio.ornt_transform(_ornt(aff), nio.axcodes2ornt(target))
    out = nio.apply_orientation(array, transform)
    new_aff = aff @ nio.inv_ornt_aff(transform, array.shape)
    return np.ascontiguousarray(out), new_aff
