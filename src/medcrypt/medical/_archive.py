"""Phantom archives: whole synthetic 3D cases written as NIfTI or DICOM series, any orientation.

Layout written by :func:`write_phantom_archive`::

    <out>/labels.csv                 case_id,label
    <out>/<case_id>/image.nii.gz     (NIfTI cases)
    <out>/<case_id>/image/IM_*.dcm   (DICOM cases: one MR series)
    <out>/<case_id>/mask.nii.gz      (every case, on the image's grid)
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from nibabel import orientations as nio

from medcrypt._types import ProgressCallback
from medcrypt.medical._dicom import write_dicom_series
from medcrypt.medical._nifti import encode_nifti_volume
from medcrypt.medical._orient import reorient
from medcrypt.medical._phantoms import CLASS_NAMES, make_phantom_volume

__all__ = ["PHANTOM_ORIENTATIONS", "write_phantom_archive", "write_phantom_case"]

logger = logging.getLogger(__name__)

PhantomFormat = Literal["nifti", "dicom"]

#: Orientations the archive cycles through: radiological/neurological axial stacks and two
#: stacks whose axial axis is not the third array axis.
PHANTOM_ORIENTATIONS: tuple[str, ...] = ("LPS", "RAS", "LAI", "IAL", "PSR")


def _check_orientation(orientation: str) -> str:
    codes = orientation.upper()
    try:
        ornt = nio.axcodes2ornt(tuple(codes))
    except ValueError as exc:
        raise ValueError(f"expected three axis codes like 'LPS', got {orientation!r}") from exc
    if len(codes) != 3 or np.isnan(ornt).any() or len(set(ornt[:, 0].tolist())) != 3:
        raise ValueError(
            f"expected three axis codes naming each of L/R, A/P, S/I once, got {orientation!r}"
        )
    return codes


def write_phantom_case(
    directory: str | Path,
    *,
    label: int,
    seed: int,
    fmt: PhantomFormat | str = "nifti",
    orientation: str = "LPS",
    shape: tuple[int, int, int] = (64, 64, 24),
) -> tuple[Path, Path]:
    """Write one phantom case (volume + mask) as NIfTI or a DICOM series.

    The phantom is re-stored with its array axes pointing to ``orientation`` (nibabel axis
    codes, e.g. "LPS", "RAS", "IAL"); array and affine are re-oriented together so every
    voxel keeps its world position, and the largest-tumour axial slice is the same anatomy
    whatever the orientation.

    Args:
        directory: the case folder (created if absent).
        label: class index into CLASS_NAMES.
        seed: phantom seed (also seeds the DICOM UIDs, so reruns are identical).
        fmt: "nifti" writes ``image.nii.gz``; "dicom" writes ``image/`` (one MR series
            stacked along the third re-oriented axis, file names shuffled by ``seed``).
        orientation: target axis codes.
        shape: phantom (nx, ny, nz) before re-orientation.

    Returns:
        ``(image path, mask path)``; the mask is always ``mask.nii.gz`` on the image grid.
    """
    codes = _check_orientation(orientation)
    if fmt not in ("nifti", "dicom"):
        raise ValueError(f"fmt must be 'nifti' or 'dicom', got {fmt!r}")
    volume, mask, affine = make_phantom_volume(label, shape=shape, seed=seed)
    volume, new_affine = reorient(volume, affine, codes)
    mask, _ = reorient(mask, affine, codes)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    mask_path = out / "mask.nii.gz"
    mask_path.write_bytes(encode_nifti_volume(mask.astype(np.uint8), new_affine))
    if fmt == "nifti":
        image_path = out / "image.nii.gz"
        image_path.write_bytes(encode_nifti_volume(volume.astype(np.float32), new_affine))
    else:
        image_path = out / "image"
        write_dicom_series(
            volume,
            new_affine,
            image_path,
            patient_name=f"Phantom^{CLASS_NAMES[label]}",
            patient_id=f"PHANTOM-{seed}",
            series_description=f"medcrypt phantom {codes}",
            uid_entropy=["medcrypt-phantom", str(label), str(seed), codes, str(shape)],
            shuffle_names_seed=seed,
        )
    logger.debug("wrote phantom case %s (%s, %s, label %s)", out, fmt, codes, label)
    return image_path, mask_path


def write_phantom_archive(
    out: str | Path,
    *,
    n_cases: int,
    seed: int,
    formats: Sequence[PhantomFormat | str] = ("nifti",),
    orientations: Sequence[str] = PHANTOM_ORIENTATIONS,
    shape: tuple[int, int, int] = (64, 64, 24),
    progress: ProgressCallback | None = None,
) -> Path:
    """Write ``n_cases`` phantom cases and ``labels.csv`` under ``out``.

    Case ``i`` is ``case_{i:04d}`` with label ``i % 5`` (balanced classes), format
    ``formats[i % len(formats)]``, orientation ``orientations[i % len(orientations)]`` and
    phantom seed ``seed + i``.

    Returns:
        The path of ``labels.csv``.
    """
    if n_cases < 1:
        raise ValueError(f"n_cases must be >= 1, got {n_cases}")
    if not formats or not orientations:
        raise ValueError("formats and orientations must not be empty")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_cases):
        case_id = f"case_{i:04d}"
        label = i % len(CLASS_NAMES)
        write_phantom_case(
            root / case_id,
            label=label,
            seed=seed + i,
            fmt=formats[i % len(formats)],
            orientation=orientations[i % len(orientations)],
            shape=shape,
        )
        rows.append((case_id, label))
        if progress is not None:
            progress(i + 1, n_cases, "cases")
    labels = root / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "label"])
        writer.writerows(rows)
    logger.info("wrote %s phantom cases to %s", n_cases, root)
    return labels
