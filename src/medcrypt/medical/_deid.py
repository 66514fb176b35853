"""A protected slice as a de-identified DICOM Secondary Capture image.

The object is built from scratch rather than edited from the source, so nothing identifying
can leak by omission: the DICOM PS3.15 Basic Application Level Confidentiality Profile is
met by construction.

* Patient, study and accession identifiers, names, dates and times are present only where
  the IOD requires them (type 2) and then empty (action "Z"); everything else the profile
  lists is absent (action "X"), including institution, physicians, device serials, comments
  and private tags.
* Every UID is new (action "U"): random, or derived from caller-supplied entropy so retries
  are idempotent (pass a secret, e.g. a key fingerprint plus the case id, never the source
  UIDs alone).
* ``PatientIdentityRemoved`` is YES and ``DeidentificationMethodCodeSequence`` holds
  DCM 113100 "Basic Application Confidentiality Profile".
* From the source metadata only ``Modality`` and ``BodyPartExamined`` may be copied, and
  only when they are plain code strings.

The pixel data are the [0, 1] image as uint16 codes; RescaleSlope/Intercept map them back to
source units with the slice's window (``lo + code * (hi - lo) / 65535``); the VOI LUT is the
window itself, as ``LINEAR_EXACT`` so that any range, however narrow, is valid.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medcrypt import __version__
from medcrypt.medical._dicom import format_ds
from medcrypt.medical._png import PNG16_LEVELS, to_uint16
from medcrypt.medical._values import Slice

__all__ = ["DEIDENTIFICATION_METHOD", "encode_dicom_slice"]

#: DeidentificationMethod values (LO, at most 64 characters each).
DEIDENTIFICATION_METHOD = (
    "DICOM PS3.15 E.1 Basic Application Confidentiality Profile",
    f"medcrypt {__version__}: new object from pixels, new UIDs",
)

_CODE_STRING = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_MODALITIES = {"MR", "CT", "PT", "OT", "US", "CR", "DX", "NM"}


def _orientation_letter(direction: np.ndarray) -> str:
    """The patient-orientation letter of a RAS direction: its dominant component."""
    axis = int(np.argmax(np.abs(direction)))
    positive = direction[axis] > 0
    return ("R", "A", "H")[axis] if positive else ("L", "P", "F")[axis]


def _safe_code(meta: Mapping[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    text = str(value).strip().upper()
    return text if _CODE_STRING.match(text) else None


def encode_dicom_slice(
    array01: np.ndarray,
    slice_: Slice,
    *,
    series_description: str,
    source_meta: Mapping[str, Any] | None = None,
    uid_entropy: Sequence[str] | None = None,
) -> bytes:
    """A de-identified DICOM Secondary Capture (Part 10 bytes) of a protected slice.

    Args:
        array01: the protected image, float [0, 1], the slice's display shape.
        slice_: the slice it protects (window, orientation).
        series_description: free text for SeriesDescription (written as given; must not
            hold identifying text).
        source_meta: the source's metadata; only Modality and BodyPartExamined are used.
        uid_entropy: strings to derive the new UIDs from (deterministic); None = random.

    Raises:
        ValueError: ``array01`` is not a finite [0, 1] image of the slice's shape.
    """
    a = np.asarray(array01)
    if a.shape != slice_.array.shape:
        raise ValueError(
            f"expected an image of the slice's shape {slice_.array.shape}, got {a.shape}"
        )
    codes = to_uint16(a)
    meta = source_meta or {}

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[*uid_entropy, kind]) if uid_entropy else generate_uid()

    sop_uid = uid("sop")
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = file_meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    # SOP Common
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    # Patient (type 2, emptied) + de-identification record
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(DEIDENTIFICATION_METHOD)
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = DicomSequence([code])
    # General Study (type 2, emptied)
    ds.StudyInstanceUID = uid("study")
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    # General Series
    modality = _safe_code(meta, "Modality") or _safe_code(meta, "modality")
    ds.Modality = modality if modality in _MODALITIES else "OT"
    ds.SeriesInstanceUID = uid("series")
    ds.SeriesNumber = 1
    ds.SeriesDescription = series_description
    body_part = _safe_code(meta, "BodyPartExamined")
    if body_part:
        ds.BodyPartExamined = body_part
    else:
        ds.Laterality = ""  # type 2C: required (may be empty) when the body part is unknown
    # General Equipment + SC Equipment
    ds.Manufacturer = "medcrypt"
    ds.ConversionType = "WSD"
    ds.SecondaryCaptureDeviceManufacturer = "medcrypt"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    # General Image
    ds.InstanceNumber = 1
    cols_dir, rows_dir = slice_.affine[:3, 0], slice_.affine[:3, 1]
    ds.PatientOrientation = [_orientation_letter(cols_dir), _orientation_letter(rows_dir)]
    # SC Image module: physical pixel size (row spacing, column spacing) so readers can measure
    ds.PixelSpacing = [format_ds(np.linalg.norm(rows_dir)), format_ds(np.linalg.norm(cols_dir))]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = "protective adversarial perturbation (medcrypt)"
    ds.BurnedInAnnotation = "NO"
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(codes.shape[0]), int(codes.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(codes).tobytes()
    # Modality LUT: back to source units; VOI LUT: the normalisation window
    lo, hi = slice_.window
    ds.RescaleIntercept = format_ds(lo)
    ds.RescaleSlope = format_ds((hi - lo) / PNG16_LEVELS)
    ds.RescaleType = "US"
    ds.WindowCenter = format_ds((lo + hi) / 2.0)
    ds.WindowWidth = format_ds(max(hi - lo, 1e-6))
    # LINEAR_EXACT: the window maps [lo, hi] exactly (plain LINEAR is off by half a unit and
    # forbids a width < 1, which narrow ranges such as normalised MRI have; PS3.3 C.11.2.1.3)
    ds.VOILUTFunction = "LINEAR_EXACT"

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
