"""Choosing the largest-tumour axial slice and normalising it (pure numpy)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from skimage.filters import threshold_otsu

from medcrypt.errors import EmptyMaskError, ImageFormatError
from medcrypt.medical._orient import axial_axis, display_geometry
from medcrypt.medical._values import TIE_RULE, SliceChoice

__all__ = [
    "FALLBACK_RULE",
    "Fallback",
    "choose_slice",
    "foreground_mask",
    "robust_window",
    "tumour_voxels",
]

logger = logging.getLogger(__name__)

Fallback = Literal["error", "largest_brain"]

#: What the "largest_brain" fallback does, recorded in ``SliceChoice.fallback``.
FALLBACK_RULE = (
    "largest_brain: the tumour mask is empty, so the axial slice with the largest head area "
    "(image voxels that differ from the background value, or above Otsu's threshold when the "
    "background is not constant) was chosen; ties go to the most inferior slice"
)

#: Percentiles of in-head pixels that span the [0, 1] window.
WINDOW_PERCENTILES = (0.5, 99.5)


def tumour_voxels(labels: np.ndarray, tumour_labels: Sequence[int] | None = None) -> np.ndarray:
    """Boolean tumour mask: ``labels > 0`` by default, else ``labels`` in ``tumour_labels``."""
    if labels.dtype == bool:
        return labels
    if tumour_labels is None:
        return labels > 0
    return np.isin(labels, np.asarray(list(tumour_labels)))


def _border_values(array: np.ndarray) -> np.ndarray:
    parts = []
    for ax in range(array.ndim):
        parts.append(np.take(array, 0, axis=ax).ravel())
        parts.append(np.take(array, array.shape[ax] - 1, axis=ax).ravel())
    return np.concatenate(parts)


def foreground_mask(array: np.ndarray) -> np.ndarray:
    """Voxels inside the head: those that differ from a constant background value.

    The background value is the most common value on the array's border when it covers at
    least half of the border (zero-filled or skull-stripped data); otherwise (noisy
    background) the foreground is everything above Otsu's threshold.
    """
    border = _border_values(array)
    values, counts = np.unique(border, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] >= 0.5 * border.size:
        return np.asarray(array != values[top])
    if float(array.min()) == float(array.max()):
        return np.zeros(array.shape, dtype=bool)
    return np.asarray(array > threshold_otsu(array))


def robust_window(plane: np.ndarray) -> tuple[float, float]:
    """A [lo, hi] intensity window: the 0.5th and 99.5th percentiles of in-head pixels.

    Falls back to all pixels when the head covers fewer than 16 pixels, and widens a
    degenerate window (constant image) to ``(lo, lo + 1)`` so the mapping stays invertible.
    """
    values = plane[foreground_mask(plane)]
    if values.size < 16:
        values = plane.ravel()
    lo, hi = (float(v) for v in np.percentile(values, WINDOW_PERCENTILES))
    if not hi > lo:
        lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def _in_plane_area(affine: np.ndarray, axis: int) -> float:
    a, b = (affine[:3, i] for i in range(3) if i != axis)
    return float(np.linalg.norm(np.cross(a, b)))


def _pick(counts: np.ndarray, points_superior: bool) -> tuple[int, tuple[int, ...]]:
    """Stored index of the largest count, ties to the most inferior; plus all tied indices."""
    best = counts.max()
    tied = np.flatnonzero(counts == best)
    # most inferior = lowest canonical index: lowest stored index when the axis points
    # superior, highest stored index otherwise.
    chosen = int(tied.min() if points_superior else tied.max())
    return chosen, tuple(int(t) for t in tied)


def choose_slice(
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    tumour_labels: Sequence[int] | None = None,
    fallback: Fallback = "error",
    image: np.ndarray | None = None,
    case_id: str | None = None,
    uri: str | None = None,
) -> SliceChoice:
    """The axial slice with the largest tumour area (mm^2) of a label mask.

    The axial axis is found from ``affine`` (the stored axis closest to inferior-superior),
    not assumed to be the last one. Areas are voxel counts times the in-plane voxel area;
    ties go to the most inferior slice (see :data:`~medcrypt.medical.TIE_RULE`).

    Args:
        mask: label (or boolean) volume on the image grid.
        affine: the grid's voxel -> world affine.
        tumour_labels: labels that count as tumour; None = any label > 0.
        fallback: "error" raises on an empty mask; "largest_brain" chooses the slice with
            the largest head area of ``image`` and records that in ``SliceChoice.fallback``.
        image: the image volume, needed only by the "largest_brain" fallback.
        case_id, uri: context for errors.

    Raises:
        EmptyMaskError: no tumour voxel and ``fallback == "error"``.
    """
    if mask.ndim != 3:
        raise ImageFormatError(
            f"expected a 3D mask, got shape {mask.shape}", case_id=case_id, uri=uri
        )
    aff = np.asarray(affine, dtype=np.float64)
    axis, sup = axial_axis(aff)
    n = int(mask.shape[axis])
    other = tuple(a for a in range(3) if a != axis)
    counts = tumour_voxels(mask, tumour_labels).sum(axis=other, dtype=np.int64)
    fallback_note: str | None = None
    if counts.max(initial=0) == 0:
        wanted = "any label > 0" if tumour_labels is None else f"labels {list(tumour_labels)}"
        if fallback == "error":
            present = np.unique(mask).tolist()[:10]
            raise EmptyMaskError(
                f"expected at least one tumour voxel ({wanted}), got an empty tumour mask "
                f"(labels present: {present})",
                case_id=case_id,
                uri=uri,
            )
        if fallback != "largest_brain":
            raise ValueError(f"fallback must be 'error' or 'largest_brain', got {fallback!r}")
        if image is None:
            raise ValueError("the 'largest_brain' fallback needs the image volume")
        counts = foreground_mask(image).sum(axis=other, dtype=np.int64)
        fallback_note = FALLBACK_RULE
        logger.warning("case %s: empty tumour mask (%s), using %s", case_id, wanted, fallback)
        if counts.max(initial=0) == 0:
            raise EmptyMaskError(
                "tumour mask is empty and the image has no head voxels for the fallback",
                case_id=case_id,
                uri=uri,
            )
    stored, tied = _pick(counts, sup)
    geometry = display_geometry(aff, mask.shape, axis, stored)
    row_axis, col_axis = (other[1], other[0]) if geometry.transpose else other
    n_rows, n_cols = mask.shape[row_axis], mask.shape[col_axis]
    centre = geometry.affine @ np.array([(n_cols - 1) / 2.0, (n_rows - 1) / 2.0, 0.0, 1.0])
    area = 0.0 if fallback_note else float(counts[stored]) * _in_plane_area(aff, axis)
    return SliceChoice(
        axis=axis,
        stored_index=stored,
        canonical_index=stored if sup else n - 1 - stored,
        area_mm2=area,
        tied_indices=tied,
        rule=TIE_RULE,
        fallback=fallback_note,
        world_position=(float(centre[0]), float(centre[1]), float(centre[2])),
        n_slices=n,
    )
