"""DICOM series adapter: grouping/sorting with SimpleITK (GDCM), headers and pixels with pydicom.

Reading: SimpleITK's GDCM series tools group a folder's files by series and order them by
geometry (ImagePositionPatient along the slice normal). pydicom then reads the headers to
check the series is whole and consistent (one orientation, one pixel grid, evenly spaced
positions, no gaps) and reads pixel data only for the slices asked for, applying the
rescale slope and intercept.

Writing: :func:`write_dicom_series` stores a 3D volume as a series of MR Image objects (one
per plane of the third array axis), used by the phantom archive and by tests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_rescale
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from medcrypt.errors import DicomSeriesError, ImageFormatError

__all__ = ["DicomSource", "format_ds", "lps_to_ras", "scrub_uids", "write_dicom_series"]

logger = logging.getLogger(__name__)

#: Positions / spacings agreeing within this share of the slice step are "the same".
SPACING_TOLERANCE = 0.01
_FLIP = np.diag([-1.0, -1.0, 1.0])  # DICOM LPS <-> nibabel RAS

_GEOMETRY = ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns")


def lps_to_ras(v: np.ndarray) -> np.ndarray:
    """Flip x and y (the same matrix maps RAS back to LPS)."""
    return _FLIP @ np.asarray(v, dtype=np.float64)


def format_ds(value: float | np.floating[Any]) -> str:
    """A Decimal String (at most 16 characters) for ``value``."""
    return format_number_as_ds(float(value)) if value != 0 else "0"


#: a DICOM UID (dotted decimal, as in 1.2.840.10008...): scrubbed from error messages
_UID_TEXT = re.compile(r"(?<![\d.])[0-2](?:\.\d+){3,}(?![\d.])")


def _uid_name(value: object) -> str:
    """A standard UID (SOP class, transfer syntax) by name; any other UID as ``<UID>``.

    Error messages end up in quarantine records next to released data: instance UIDs
    (study, series, SOP instance, frame of reference) identify a patient's exam and must
    not appear there, while a registered name ("MR Image Storage") is useful and public.
    """
    if not str(value).strip():
        return "unknown"
    uid = UID(str(value).strip())
    name = uid.name if uid.is_valid else ""
    return name if name and name != str(uid) else "<UID>"


def scrub_uids(text: str) -> str:
    """``text`` with every UID replaced by its registered name, or ``<UID>``."""
    return _UID_TEXT.sub(lambda m: _uid_name(m.group(0)), text)


def _describe_groups(groups: Sequence[Sequence[str]]) -> str:
    """ "8 files (IM_0000.dcm ...), 3 files (IM_0010.dcm ...)": mixed series without UIDs."""
    parts = []
    for files in sorted(groups, key=lambda g: (-len(g), sorted(g)[:1])):
        first = sorted(Path(f).name for f in files)[:2]
        more = " ..." if len(files) > 2 else ""
        parts.append(f"{len(files)} file(s) ({', '.join(first)}{more})")
    return "; ".join(parts)


def _series_files(folder: Path, *, case_id: str | None) -> list[str]:
    # imported here: SimpleITK is a 50 MB native package needed only to read DICOM series,
    # and the rest of medcrypt (PGD, phantoms, writers) runs without it, e.g. on a GPU box
    # whose image lacks it
    import SimpleITK as sitk

    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise ImageFormatError(
            f"cannot scan folder for DICOM series ({scrub_uids(str(exc))})",
            case_id=case_id,
            uri=str(folder),
        ) from exc
    if not ids:
        raise ImageFormatError(
            "expected a folder holding one DICOM series, found no DICOM image files",
            case_id=case_id,
            uri=str(folder),
        )
    if len(ids) > 1:
        groups = [sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), i) for i in ids]
        raise DicomSeriesError(
            f"expected one DICOM series in the folder, found {len(ids)} mixed series: "
            f"{_describe_groups(groups)}",
            case_id=case_id,
            uri=str(folder),
        )
    files = [str(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])]
    _check_left_out(folder, set(files), ids[0], case_id=case_id)
    return files


def _check_left_out(
    folder: Path, listed: set[str], series_uid: str, *, case_id: str | None
) -> None:
    """GDCM silently skips objects of the series that hold no image: name them instead."""
    for f in sorted(folder.iterdir()):
        if not f.is_file() or str(f) in listed or f.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(f, defer_size=256)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            logger.debug("ignoring non-DICOM file %s in series folder", f)
            continue
        if str(ds.get("SeriesInstanceUID", "")) == series_uid and "PixelData" not in ds:
            raise ImageFormatError(
                "expected every object of the series to be an image, got one without pixel "
                f"data (SOP class {_uid_name(ds.get('SOPClassUID', ''))})",
                case_id=case_id,
                uri=str(f),
            )


class DicomSource:
    """A DICOM series (folder, one file, or list of files): geometry now, pixels on demand.

    Missing slices are found as gaps between slice positions; a slice missing at either end
    of a series cannot be told from a shorter series and goes unnoticed.

    Raises:
        ImageFormatError: unreadable or non-image DICOM, no geometry, multi-frame.
        DicomSeriesError: mixed series, missing slices, inconsistent spacing or grids.
    """

    def __init__(self, path: str | Path | Sequence[str | Path], *, case_id: str | None) -> None:
        self.case_id = case_id
        if isinstance(path, str | Path):
            p = Path(path)
            self.path = str(p)
            files = _series_files(p, case_id=case_id) if p.is_dir() else [str(p)]
        else:
            files = [str(f) for f in path]
            if not files:
                raise ImageFormatError("expected DICOM files, got an empty list", case_id=case_id)
            self.path = str(Path(files[0]).parent)
        headers = [self._header(f) for f in files]
        by_series: dict[str, list[str]] = {}
        for f, h in zip(files, headers, strict=True):
            by_series.setdefault(str(h.get("SeriesInstanceUID", "")), []).append(f)
        if len(by_series) > 1:
            raise DicomSeriesError(
                f"expected files of one DICOM series, got {len(by_series)} mixed series: "
                f"{_describe_groups(list(by_series.values()))}",
                case_id=case_id,
                uri=self.path,
            )
        self._files, self._headers = files, headers
        self.shape, self.affine = self._geometry()
        first = headers[0]
        self.meta: dict[str, Any] = {
            "format": "dicom",
            "world_space": True,
            "n_files": len(files),
            "Modality": str(first.get("Modality", "")),
            "BodyPartExamined": str(first.get("BodyPartExamined", "")),
            "series_instance_uid": str(first.get("SeriesInstanceUID", "")),
            "sop_class_uid": str(first.get("SOPClassUID", "")),
        }

    def _error(self, message: str, *, uri: str | None = None) -> ImageFormatError:
        # messages quote pydicom's errors, which may hold UIDs: keep only registered names
        return ImageFormatError(scrub_uids(message), case_id=self.case_id, uri=uri or self.path)

    def _header(self, file: str) -> Dataset:
        try:
            ds = pydicom.dcmread(file, defer_size=256)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise self._error(
                f"expected a DICOM file, got unreadable data ({exc})", uri=file
            ) from exc
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise self._error(
                "expected a DICOM image, got an object without pixel data "
                f"(SOP class {_uid_name(ds.get('SOPClassUID', ''))})",
                uri=file,
            )
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames != 1:
            raise self._error(
                f"expected single-frame DICOM images, got {frames} frames (multi-frame "
                "enhanced objects are not supported)",
                uri=file,
            )
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise self._error("expected greyscale DICOM (SamplesPerPixel 1)", uri=file)
        missing = [k for k in _GEOMETRY if k not in ds]
        if missing:
            raise self._error(
                f"expected image geometry in the DICOM header, missing {', '.join(missing)}",
                uri=file,
            )
        return ds

    def _geometry(self) -> tuple[tuple[int, int, int], np.ndarray]:
        h0 = self._headers[0]
        iop = np.asarray([float(v) for v in h0.ImageOrientationPatient])
        spacing = np.asarray([float(v) for v in h0.PixelSpacing])  # (row step, column step)
        rows, cols = int(h0.Rows), int(h0.Columns)
        for f, h in zip(self._files, self._headers, strict=True):
            other_iop = np.asarray([float(v) for v in h.ImageOrientationPatient])
            if not np.allclose(other_iop, iop, atol=1e-4):
                raise DicomSeriesError(
                    f"expected one orientation in the series, got {other_iop.tolist()} vs "
                    f"{iop.tolist()}",
                    case_id=self.case_id,
                    uri=f,
                )
            if (int(h.Rows), int(h.Columns)) != (rows, cols) or not np.allclose(
                [float(v) for v in h.PixelSpacing], spacing, rtol=1e-4
            ):
                raise DicomSeriesError(
                    f"expected one pixel grid in the series ({rows}x{cols}, spacing "
                    f"{spacing.tolist()}), got {int(h.Rows)}x{int(h.Columns)} spacing "
                    f"{[float(v) for v in h.PixelSpacing]}",
                    case_id=self.case_id,
                    uri=f,
                )
        row_dir, col_dir = iop[:3], iop[3:]
        normal = np.cross(row_dir, col_dir)
        ipp = np.asarray([[float(v) for v in h.ImagePositionPatient] for h in self._headers])
        n = len(self._headers)
        if n > 1:
            along = ipp @ normal
            steps = np.diff(along)
            step = float(np.median(steps))
            if abs(step) < 1e-6 or np.any(np.sign(steps) != np.sign(step)):
                raise DicomSeriesError(
                    "expected slices at distinct positions along the slice normal, got "
                    f"repeated or unordered positions {np.round(along, 3).tolist()[:20]} "
                    "(two series mixed under one SeriesInstanceUID?)",
                    case_id=self.case_id,
                    uri=self.path,
                )
            off = np.abs(steps - step) > SPACING_TOLERANCE * abs(step) + 1e-4
            if np.any(off):
                k = int(np.flatnonzero(off)[0])
                ratio = steps[k] / step
                what = (
                    f"{round(ratio) - 1} missing slice(s)"
                    if ratio > 1.5 and abs(ratio - round(ratio)) < 0.05
                    else "inconsistent slice spacing"
                )
                raise DicomSeriesError(
                    f"expected evenly spaced slices ({abs(step):.4g} mm apart), got {what}: "
                    f"{abs(steps[k]):.4g} mm between {Path(self._files[k]).name} and "
                    f"{Path(self._files[k + 1]).name}",
                    case_id=self.case_id,
                    uri=self.path,
                )
            slice_vec = (ipp[-1] - ipp[0]) / (n - 1)
            sideways = slice_vec - (slice_vec @ normal) * normal
            if np.linalg.norm(sideways) > SPACING_TOLERANCE * abs(step) + 1e-4:
                raise DicomSeriesError(
                    "expected slice positions along the slice normal, got a sheared stack "
                    f"(gantry tilt?) drifting {np.linalg.norm(sideways):.3g} mm per slice",
                    case_id=self.case_id,
                    uri=self.path,
                )
        else:
            h = self._headers[0]
            thickness = float(h.get("SpacingBetweenSlices") or h.get("SliceThickness") or 1.0)
            slice_vec = normal * thickness
        affine = np.eye(4)
        affine[:3, 0] = lps_to_ras(row_dir * spacing[1])  # column index i runs along a row
        affine[:3, 1] = lps_to_ras(col_dir * spacing[0])  # row index j runs down a column
        affine[:3, 2] = lps_to_ras(slice_vec)
        affine[:3, 3] = lps_to_ras(ipp[0])
        return (cols, rows, n), affine

    def _pixels(self, k: int) -> np.ndarray:
        file = self._files[k]
        try:
            ds = pydicom.dcmread(file)
            raw = ds.pixel_array
            data = np.asarray(apply_rescale(raw, ds), dtype=np.float32)
        except (
            InvalidDicomError,
            OSError,
            ValueError,
            EOFError,
            AttributeError,
            RuntimeError,
        ) as exc:
            raise self._error(f"cannot decode DICOM pixel data ({exc})", uri=file) from exc
        rows, cols = self.shape[1], self.shape[0]
        if data.shape != (rows, cols):
            raise self._error(
                f"expected {rows}x{cols} pixels, got pixel data of shape {data.shape}", uri=file
            )
        return data.T  # (column index i, row index j)

    def read_all(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        for k in range(self.shape[2]):
            out[:, :, k] = self._pixels(k)
        return out

    def read_plane(self, axis: int, index: int) -> np.ndarray:
        if axis == 2:  # one file holds the plane: read only that file's pixels
            return self._pixels(int(index))
        return np.take(self.read_all(), int(index), axis=axis)


def write_dicom_series(
    array: np.ndarray,
    affine: np.ndarray,
    directory: str | Path,
    *,
    patient_name: str = "Phantom^Anonymous",
    patient_id: str = "PHANTOM",
    series_description: str = "medcrypt phantom",
    uid_entropy: Sequence[str] | None = None,
    shuffle_names_seed: int | None = None,
) -> list[Path]:
    """Write a 3D volume as a DICOM MR series, one file per plane of the third array axis.

    Geometry comes from ``affine`` (RAS, converted to DICOM's LPS); values are stored as
    uint16 with RescaleSlope/Intercept spanning the volume's range. File names are
    ``IM_####.dcm`` in slice order, or in a seeded random order with ``shuffle_names_seed``
    (so readers must sort by geometry). UIDs are derived from ``uid_entropy`` when given
    (deterministic), random otherwise.

    Returns:
        The written files in slice order.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    vol = np.asarray(array, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {vol.shape}")
    aff = np.asarray(affine, dtype=np.float64)

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[*uid_entropy, kind]) if uid_entropy else generate_uid()

    study_uid, series_uid, frame_uid = uid("study"), uid("series"), uid("frame")
    lo, hi = float(vol.min()), float(vol.max())
    intercept = float(format_ds(lo))
    slope = float(format_ds((hi - lo) / 65535.0)) if hi > lo else 1.0
    codes = np.clip(np.rint((vol - intercept) / slope), 0, 65535).astype(np.uint16)
    col_step, row_step = np.linalg.norm(aff[:3, 0]), np.linalg.norm(aff[:3, 1])
    row_dir = lps_to_ras(aff[:3, 0]) / col_step
    col_dir = lps_to_ras(aff[:3, 1]) / row_step
    n = vol.shape[2]
    names = list(range(n))
    if shuffle_names_seed is not None:
        names = np.random.default_rng(shuffle_names_seed).permutation(n).tolist()
    written = []
    for k in range(n):
        sop_uid = uid(f"sop{k}")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName, ds.PatientID = patient_name, patient_id
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20200101", "120000", "1"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, k + 1
        ds.SeriesDescription = series_description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
        ds.MRAcquisitionType, ds.EchoTime, ds.EchoTrainLength = "3D", "", ""
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer, ds.BodyPartExamined, ds.PatientPosition = "medcrypt", "HEAD", "HFS"
        ds.RepetitionTime = ""
        ds.ImageOrientationPatient = [format_ds(v) for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [format_ds(v) for v in lps_to_ras((aff @ [0, 0, k, 1])[:3])]
        ds.PixelSpacing = [format_ds(row_step), format_ds(col_step)]
        ds.SliceThickness = format_ds(np.linalg.norm(aff[:3, 2]))
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = format_ds(intercept), format_ds(slope)
        ds.PixelData = np.ascontiguousarray(codes[:, :, k].T).tobytes()
        path = out / f"IM_{names[k]:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    logger.debug("wrote %s DICOM files to %s", n, out)
    return written
