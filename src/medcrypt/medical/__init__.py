"""medcrypt.medical: image IO and the slice (see DESIGN.md at the repository root).

Public names are re-exported here with __all__.

Reading NIfTI and DICOM series, choosing the largest-tumour axial slice, normalising it to
[0, 1], and writing protected slices back as PNG, NIfTI and de-identified DICOM. Pure numpy
plus nibabel / pydicom / SimpleITK: never torch, ray or boto3.
"""

from __future__ import annotations

from medcrypt.medical._archive import (
    PHANTOM_ORIENTATIONS,
    write_phantom_archive,
    write_phantom_case,
)
from medcrypt.medical._case import (
    align_mask,
    extract_slice,
    load_case_slice,
    open_image,
    read_mask,
    read_volume,
)
from medcrypt.medical._deid import DEIDENTIFICATION_METHOD, encode_dicom_slice
from medcrypt.medical._dicom import write_dicom_series
from medcrypt.medical._orient import axcodes_of, axial_axis, display_geometry, reorient
from medcrypt.medical._phantoms import CLASS_NAMES, make_phantom_slices, make_phantom_volume
from medcrypt.medical._png import PNG16_LEVELS, decode_png16, encode_png16
from medcrypt.medical._select import choose_slice, foreground_mask, robust_window, tumour_voxels
from medcrypt.medical._values import TIE_RULE, Slice, SliceChoice, Volume
from medcrypt.medical._writers import encode_nifti_slice

__all__: list[str] = [
    "DEIDENTIFICATION_METHOD",
    "PHANTOM_ORIENTATIONS",
    "PNG16_LEVELS",
    "TIE_RULE",
    "Slice",
    "SliceChoice",
    "Volume",
    "align_mask",
    "axcodes_of",
    "axial_axis",
    "choose_slice",
    "decode_png16",
    "display_geometry",
    "encode_dicom_slice",
    "encode_nifti_slice",
    "encode_png16",
    "extract_slice",
    "foreground_mask",
    "load_case_slice",
    "open_image",
    "read_mask",
    "read_volume",
    "reorient",
    "robust_window",
    "tumour_voxels",
    "write_dicom_series",
    "write_phantom_archive",
    "write_phantom_case",
]

__all__ += ["CLASS_NAMES", "make_phantom_slices", "make_phantom_volume"]
