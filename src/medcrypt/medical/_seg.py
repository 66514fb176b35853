"""DICOM Segmentation (SEG) masks through highdicom, as label volumes in RAS world space.

A SEG object stores one frame per (segment, source slice) it covers. highdicom's
``get_volume(combine_segments=True)`` stacks them into a label volume (segment numbers as
labels) with its own affine; ``to_nibabel`` turns that into nibabel's RAS convention, and the
usual grid check then resamples it onto the image grid (a SEG usually spans fewer slices than
its source series).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import SegmentationStorage

from medcrypt.errors import ImageFormatError
from medcrypt.medical._dicom import scrub_uids

__all__ = ["is_dicom_seg", "read_seg_labels"]

logger = logging.getLogger(__name__)


def is_dicom_seg(path: str | Path) -> bool:
    """True when ``path`` is a readable DICOM object of the Segmentation Storage class."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return False
    return str(ds.get("SOPClassUID", "")) == SegmentationStorage


def read_seg_labels(
    path: str | Path, *, case_id: str | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Labels (segment numbers, int32), RAS affine and metadata of a DICOM SEG file.

    Raises:
        ImageFormatError: highdicom cannot read it, or its segments overlap (a label volume
            needs one segment per voxel), or it is fractional.
    """
    import highdicom as hd

    p = str(path)
    try:
        seg = hd.seg.segread(p)
        if str(seg.SegmentationType) != "BINARY" and "LABELMAP" not in str(seg.SegmentationType):
            raise ImageFormatError(
                f"expected a BINARY or LABELMAP DICOM SEG, got {seg.SegmentationType}",
                case_id=case_id,
                uri=p,
            )
        volume = seg.get_volume(combine_segments=True)
        nifti = volume.to_nibabel()
    except ImageFormatError:
        raise
    except Exception as exc:  # highdicom raises ValueError/RuntimeError/KeyError/... freely
        raise ImageFormatError(
            "expected a DICOM SEG that highdicom can stack into a label volume, got: "
            f"{scrub_uids(str(exc))}",
            case_id=case_id,
            uri=p,
        ) from exc
    labels = np.asarray(nifti.dataobj).astype(np.int32)
    if labels.ndim != 3:
        raise ImageFormatError(
            f"expected a 3D segmentation, got shape {labels.shape}", case_id=case_id, uri=p
        )
    meta = {
        "format": "dicom-seg",
        "world_space": True,
        "segments": [int(n) for n in seg.segment_numbers],
        "frame_of_reference_uid": str(seg.get("FrameOfReferenceUID", "")),
    }
    return labels, np.asarray(nifti.affine, dtype=np.float64), meta
