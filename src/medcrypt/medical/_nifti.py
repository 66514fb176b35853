"""NIfTI adapter (nibabel): open with integrity checks, read whole volumes or single planes.

Single planes come from nibabel's array proxy (``img.dataobj[...]``), which reads only the
bytes it needs: a memory map for uncompressed ``.nii``, seek-and-read through
``indexed_gzip`` for ``.nii.gz`` (nibabel uses it automatically when installed).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from medcrypt.errors import ImageFormatError
from medcrypt.medical._orient import axcodes_of

__all__ = ["NiftiSource", "encode_nifti_volume", "is_nifti_path"]

logger = logging.getLogger(__name__)

_ISIZE_MOD = 2**32
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, struct.error)


def is_nifti_path(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


class NiftiSource:
    """An opened NIfTI file: geometry from the header, voxels read on demand.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        case_id: for error messages.
        role: "image" or "mask", for error messages.

    Raises:
        ImageFormatError: not readable as NIfTI, truncated, or not 3D.
    """

    def __init__(self, path: str | Path, *, case_id: str | None, role: str = "image") -> None:
        self.path = str(path)
        self.case_id = case_id
        self.role = role
        try:
            img = nib.load(self.path)
        except FileNotFoundError as exc:
            raise self._error(f"{role} file does not exist") from exc
        except (ImageFileError, HeaderDataError, *_READ_ERRORS) as exc:
            raise self._error(f"expected a NIfTI {role}, got unreadable data ({exc})") from exc
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise self._error(f"expected a NIfTI-1/2 {role}, got {type(img).__name__}")
        self.img = img
        shape = tuple(int(s) for s in img.shape)
        extra = shape[3:]
        if len(shape) < 3 or any(s != 1 for s in extra):
            raise self._error(
                f"expected a 3D {role} (trailing dimensions of size 1 allowed), "
                f"got {len(shape)}D shape {shape}"
            )
        self.shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        self._extra = len(extra)
        self.affine = np.asarray(img.affine, dtype=np.float64)
        if not np.all(np.isfinite(self.affine)) or abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise self._error(f"expected an invertible affine, got {self.affine.tolist()}")
        header = img.header
        qcode, scode = int(header["qform_code"]), int(header["sform_code"])
        self.meta: dict[str, Any] = {
            "format": "nifti",
            "dtype": str(header.get_data_dtype()),
            "qform_code": qcode,
            "sform_code": scode,
            # qform/sform code 0 means "unknown": the affine is bare voxel scaling and does
            # not place the volume in any world space.
            "world_space": bool(qcode > 0 or scode > 0),
        }
        self._check_size()

    def _error(self, message: str) -> ImageFormatError:
        return ImageFormatError(message, case_id=self.case_id, uri=self.path)

    def _expected_bytes(self) -> int:
        header = self.img.header
        # the loaded image's header copy has vox_offset reset; the array proxy keeps it
        offset = int(getattr(self.img.dataobj, "offset", header.get_data_offset()))
        n = int(np.prod(self.img.shape)) * header.get_data_dtype().itemsize
        return offset + n

    def _check_size(self) -> None:
        """Refuse truncated files without decompressing a healthy ``.nii.gz``.

        A gzip member ends with ISIZE, the uncompressed size mod 2**32: if it matches the
        size the header promises the file is whole (cheap). Otherwise (a truncated file,
        or a legal multi-member gzip) decompress it once as a stream to decide.
        """
        expected = self._expected_bytes()
        try:
            if self.path.lower().endswith(".gz"):
                with open(self.path, "rb") as fh:
                    fh.seek(-4, os.SEEK_END)
                    (isize,) = struct.unpack("<I", fh.read(4))
                if isize == expected % _ISIZE_MOD:
                    return
                total = 0
                with gzip.open(self.path, "rb") as gz:
                    while chunk := gz.read(1 << 20):
                        total += len(chunk)
            else:
                total = os.path.getsize(self.path)
        except (*_READ_ERRORS,) as exc:
            raise self._error(
                f"{self.role} file is truncated or corrupt: expected {expected} bytes of "
                f"NIfTI data, decompression failed ({exc})"
            ) from exc
        if total < expected:
            raise self._error(
                f"{self.role} file is truncated: header promises {expected} bytes, "
                f"file holds {total}"
            )

    @property
    def axcodes(self) -> tuple[str, str, str]:
        return axcodes_of(self.affine)

    def read_all(self) -> np.ndarray:
        """The whole volume, scaled by the header's slope/intercept, as float32."""
        try:
            data = np.asarray(self.img.dataobj)
        except _READ_ERRORS as exc:
            raise self._error(f"cannot read {self.role} voxels ({exc})") from exc
        data = data.reshape(self.shape)
        return data.astype(np.float32, copy=False) if data.dtype != np.float32 else data

    def read_labels(self) -> np.ndarray:
        """The whole volume as raw (unscaled-type) values, for label masks."""
        try:
            data = np.asarray(self.img.dataobj)
        except _READ_ERRORS as exc:
            raise self._error(f"cannot read {self.role} voxels ({exc})") from exc
        return data.reshape(self.shape)

    def read_plane(self, axis: int, index: int) -> np.ndarray:
        """Only plane ``index`` along ``axis`` (remaining axes in stored order), float32."""
        key: list[int | slice] = [slice(None)] * 3 + [0] * self._extra
        key[axis] = int(index)
        try:
            plane = np.asarray(self.img.dataobj[tuple(key)])
        except _READ_ERRORS as exc:
            raise self._error(
                f"cannot read {self.role} plane {index} on axis {axis} ({exc})"
            ) from exc
        return plane.astype(np.float32, copy=False)


def encode_nifti_volume(array: np.ndarray, affine: np.ndarray, *, gz: bool = True) -> bytes:
    """Serialise a volume as NIfTI-1 bytes (sform and qform = ``affine``, code 'aligned')."""
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    img.set_sform(img.affine, code="aligned")
    img.set_qform(img.affine, code="aligned")
    raw = img.to_bytes()
    if not gz:
        return raw
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as out:
        out.write(raw)
    return buf.getvalue()
