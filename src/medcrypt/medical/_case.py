"""Reading a case: image + mask -> the chosen, normalised axial slice.

``load_case_slice`` reads the whole mask (it decides), chooses the slice, then reads only
that plane of the image where the format allows it (NIfTI proxy slicing, one DICOM file).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from medcrypt.errors import GridMismatchError, ImageFormatError
from medcrypt.medical._dicom import DicomSource
from medcrypt.medical._nifti import NiftiSource, is_nifti_path
from medcrypt.medical._orient import axcodes_of, display_geometry, spacing_of
from medcrypt.medical._seg import is_dicom_seg, read_seg_labels
from medcrypt.medical._select import Fallback, choose_slice, robust_window
from medcrypt.medical._values import Slice, SliceChoice, Volume

__all__ = [
    "ImageSource",
    "align_mask",
    "extract_slice",
    "load_case_slice",
    "open_image",
    "read_mask",
    "read_volume",
]

logger = logging.getLogger(__name__)

#: Two grids are "the same" when every corner voxel centre agrees within this share of the
#: smallest voxel size.
GRID_TOLERANCE_VOXELS = 0.05


class ImageSource(Protocol):
    """An opened image whose geometry is known before its voxels are read."""

    path: str
    shape: tuple[int, int, int]
    affine: np.ndarray
    meta: dict[str, Any]

    def read_all(self) -> np.ndarray: ...

    def read_plane(self, axis: int, index: int) -> np.ndarray: ...


def open_image(
    path: str | Path | Sequence[str | Path], *, case_id: str | None = None, role: str = "image"
) -> ImageSource:
    """Open a NIfTI file, a DICOM series folder, a DICOM file or a list of DICOM files.

    Only headers are read here. Raises :class:`ImageFormatError` (or a subclass).
    """
    if not isinstance(path, str | Path):
        return DicomSource(list(path), case_id=case_id)
    p = Path(path)
    if is_nifti_path(p):
        return NiftiSource(p, case_id=case_id, role=role)
    if not p.exists():
        raise ImageFormatError(f"{role} file or folder does not exist", case_id=case_id, uri=str(p))
    return DicomSource(p, case_id=case_id)


def _check_finite(array: np.ndarray, what: str, *, case_id: str | None, uri: str) -> None:
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ImageFormatError(
            f"expected finite voxel values, got {bad} NaN/Inf voxel(s) in {what}",
            case_id=case_id,
            uri=uri,
        )


def read_volume(path: str | Path | Sequence[str | Path], *, case_id: str | None = None) -> Volume:
    """Read a whole 3D image (NIfTI or DICOM series) as float32 in source units."""
    src = open_image(path, case_id=case_id)
    array = src.read_all()
    _check_finite(array, "the volume", case_id=case_id, uri=src.path)
    return Volume(
        array=array,
        affine=src.affine,
        spacing=spacing_of(src.affine),
        axcodes=axcodes_of(src.affine),
        source=src.path,
        meta=dict(src.meta),
    )


def _mask_labels(src: NiftiSource) -> np.ndarray:
    raw = src.read_labels()
    if raw.dtype.kind in "iub":
        return raw.astype(np.int32, copy=False)
    if raw.dtype.kind != "f":
        raise ImageFormatError(
            f"expected integer labels in the mask, got dtype {raw.dtype}",
            case_id=src.case_id,
            uri=src.path,
        )
    _check_finite(raw, "the mask", case_id=src.case_id, uri=src.path)
    rounded = np.rint(raw)
    off = raw != rounded
    if off.any():
        worst = float(np.abs(raw[off] - rounded[off]).max())
        if worst > 1e-3:
            raise ImageFormatError(
                "expected integer labels in the mask, got fractional values "
                f"(up to {worst:.3g} from an integer)",
                case_id=src.case_id,
                uri=src.path,
            )
    return rounded.astype(np.int32)


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    idx = np.array(np.meshgrid(*[[0, s - 1] for s in shape[:3]], indexing="ij")).reshape(3, -1)
    return np.vstack([idx, np.ones((1, idx.shape[1]))])


def _same_grid(
    shape_a: tuple[int, ...], aff_a: np.ndarray, shape_b: tuple[int, ...], aff_b: np.ndarray
) -> bool:
    if tuple(shape_a) != tuple(shape_b):
        return False
    corners = _corners(shape_a)
    gap = np.linalg.norm((aff_a @ corners - aff_b @ corners)[:3], axis=0).max()
    tol = GRID_TOLERANCE_VOXELS * min(min(spacing_of(aff_a)), min(spacing_of(aff_b)))
    return bool(gap <= tol)


def align_mask(
    labels: np.ndarray,
    mask_affine: np.ndarray,
    image_shape: tuple[int, int, int],
    image_affine: np.ndarray,
    *,
    mask_in_world: bool = True,
    image_in_world: bool = True,
    case_id: str | None = None,
    uri: str | None = None,
) -> np.ndarray:
    """Put a label volume on the image grid.

    Same shape and affine (within :data:`GRID_TOLERANCE_VOXELS`): returned as is. Otherwise,
    when both are placed in world space and the mask's labelled voxels lie inside the image's
    field of view, the mask is resampled nearest-neighbour onto the image grid. Anything else
    raises :class:`GridMismatchError`.
    """
    m_aff = np.asarray(mask_affine, dtype=np.float64)
    i_aff = np.asarray(image_affine, dtype=np.float64)
    if _same_grid(labels.shape, m_aff, image_shape, i_aff):
        return labels
    described = (
        f"mask grid {labels.shape} with axes {''.join(axcodes_of(m_aff))} vs image grid "
        f"{tuple(image_shape)} with axes {''.join(axcodes_of(i_aff))}"
    )
    if not (mask_in_world and image_in_world):
        who = "mask" if not mask_in_world else "image"
        raise GridMismatchError(
            f"expected the mask on the image grid, got {described}; the {who} has no world "
            "space (NIfTI qform/sform code 0), so it cannot be resampled safely",
            case_id=case_id,
            uri=uri,
        )
    labelled = np.argwhere(labels != 0)
    if labelled.size:
        # where do the labelled mask voxels land in image index space?
        to_image = np.linalg.inv(i_aff) @ m_aff
        pts = to_image[:3, :3] @ labelled.T + to_image[:3, 3:4]
        lo, hi = pts.min(axis=1), pts.max(axis=1)
        limit = np.asarray(image_shape, dtype=np.float64) - 0.5
        if np.any(lo < -0.5) or np.any(hi > limit):
            raise GridMismatchError(
                f"expected mask and image to share world space, got {described} and the "
                f"mask's labelled voxels span image indices {np.round(lo, 1).tolist()} to "
                f"{np.round(hi, 1).tolist()}, outside the image (shape {tuple(image_shape)})",
                case_id=case_id,
                uri=uri,
            )
    to_mask = np.linalg.inv(m_aff) @ i_aff
    logger.info("case %s: resampling mask onto the image grid (%s)", case_id, described)
    return ndimage.affine_transform(
        labels,
        to_mask[:3, :3],
        offset=to_mask[:3, 3],
        output_shape=tuple(image_shape),
        order=0,
        mode="constant",
        cval=0,
    )


def read_mask(
    path: str | Path,
    *,
    case_id: str | None = None,
    reference: Volume | ImageSource | None = None,
) -> Volume:
    """Read a label mask (int32), NIfTI or DICOM SEG; with ``reference``, put it on that grid.

    DICOM SEG objects (highdicom) give segment numbers as labels.

    Raises:
        ImageFormatError: unreadable, not 3D, non-finite or fractional labels.
        GridMismatchError: the mask cannot be put on the reference grid.
    """
    p = Path(path)
    if is_nifti_path(p):
        src = NiftiSource(p, case_id=case_id, role="mask")
        labels, affine, meta = _mask_labels(src), src.affine, dict(src.meta)
    elif p.is_file() and is_dicom_seg(p):
        labels, affine, meta = read_seg_labels(p, case_id=case_id)
    elif not p.exists():
        raise ImageFormatError("mask file does not exist", case_id=case_id, uri=str(p))
    else:
        raise ImageFormatError(
            f"expected a NIfTI mask (.nii or .nii.gz) or a DICOM SEG object, got {p.name!r}",
            case_id=case_id,
            uri=str(p),
        )
    resampled = False
    if reference is not None:
        ref_aff = np.asarray(reference.affine, dtype=np.float64)
        aligned = align_mask(
            labels,
            affine,
            reference.shape,
            ref_aff,
            mask_in_world=bool(meta["world_space"]),
            image_in_world=bool(reference.meta.get("world_space", True)),
            case_id=case_id,
            uri=str(p),
        )
        resampled = aligned is not labels
        labels, affine = aligned, ref_aff
    return Volume(
        array=labels,
        affine=affine,
        spacing=spacing_of(affine),
        axcodes=axcodes_of(affine),
        source=str(p),
        meta={**meta, "resampled": resampled},
    )


def _make_slice(
    plane: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    choice: SliceChoice,
    *,
    source: str,
    case_id: str | None,
) -> Slice:
    _check_finite(
        plane, f"the chosen slice (index {choice.stored_index})", case_id=case_id, uri=source
    )
    geometry = display_geometry(affine, shape, choice.axis, choice.stored_index)
    display = geometry.to_display(plane.astype(np.float64))
    lo, hi = robust_window(display)
    array01 = np.clip((display - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return Slice(
        array=array01, choice=choice, affine=geometry.affine, window=(lo, hi), source=source
    )


def extract_slice(volume: Volume, choice: SliceChoice, *, case_id: str | None = None) -> Slice:
    """The chosen slice of an in-memory volume, displayed and normalised to [0, 1]."""
    plane = np.take(volume.array, choice.stored_index, axis=choice.axis)
    return _make_slice(
        plane, volume.affine, volume.shape, choice, source=volume.source, case_id=case_id
    )


def load_case_slice(
    image: str | Path,
    mask: str | Path,
    *,
    case_id: str,
    tumour_labels: Sequence[int] | None = None,
    fallback: Fallback = "error",
) -> Slice:
    """Read a case and return its largest-tumour axial slice, normalised to [0, 1].

    Reads the mask, puts it on the image grid, chooses the slice, then reads only that plane
    of the image (whole image only for the "largest_brain" fallback on an empty mask).

    Args:
        image: NIfTI file or DICOM series folder.
        mask: NIfTI label mask in the image's world space.
        case_id: names the case in errors and logs.
        tumour_labels: labels that count as tumour; None = any label > 0.
        fallback: "error" (default) or "largest_brain" for an empty mask (recorded).

    Raises:
        ImageFormatError: or a subclass (EmptyMaskError, GridMismatchError,
            DicomSeriesError), naming the case and the file.
    """
    src = open_image(image, case_id=case_id)
    mask_vol = read_mask(mask, case_id=case_id, reference=src)
    full: np.ndarray | None = None
    labels = mask_vol.array
    if fallback == "largest_brain" and not np.any(
        labels > 0 if tumour_labels is None else np.isin(labels, list(tumour_labels))
    ):
        full = src.read_all()
        _check_finite(full, "the volume", case_id=case_id, uri=src.path)
    choice = choose_slice(
        labels,
        src.affine,
        tumour_labels=tumour_labels,
        fallback=fallback,
        image=full,
        case_id=case_id,
        uri=mask_vol.source,
    )
    if full is not None:
        plane = np.take(full, choice.stored_index, axis=choice.axis)
    else:
        plane = src.read_plane(choice.axis, choice.stored_index)
    logger.debug(
        "case %s: chose stored slice %s on axis %s (canonical %s, %.1f mm^2)",
        case_id,
        choice.stored_index,
        choice.axis,
        choice.canonical_index,
        choice.area_mm2,
    )
    return _make_slice(plane, src.affine, src.shape, choice, source=src.path, case_id=case_id)
