"""DICOM error messages end up in quarantine records next to released data: no UIDs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcrypt.errors import DicomSeriesError, ImageFormatError
from medcrypt.medical import load_case_slice, write_dicom_series
from medcrypt.medical._dicom import DicomSource, scrub_uids

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _series(folder: Path, tag: str, n: int = 6) -> tuple[list[Path], set[str]]:
    vol = np.random.default_rng(0).normal(100.0, 10.0, size=(12, 10, n)).astype(np.float32)
    files = write_dicom_series(vol, AFFINE, folder, uid_entropy=[tag])
    uids = set()
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        uids |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
        uids.add(str(ds.FrameOfReferenceUID))
    return files, uids


def _mask(tmp_path: Path, n: int = 6) -> Path:
    mask = np.zeros((12, 10, n), np.uint8)
    mask[3:7, 2:6, 2] = 1
    nib.save(nib.Nifti1Image(mask, AFFINE), tmp_path / "mask.nii.gz")
    return tmp_path / "mask.nii.gz"


def test_mixed_series_are_described_by_files_not_uids(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    files_a, uids_a = _series(folder, "a")
    files_b, uids_b = _series(tmp_path / "b", "b", n=3)
    for f in files_b:
        f.rename(folder / f"B_{f.name}")
    with pytest.raises(DicomSeriesError) as err:
        load_case_slice(folder, _mask(tmp_path), case_id="c1")
    text = str(err.value)
    assert "2 mixed series: 6 file(s) (IM_0000.dcm, IM_0001.dcm ...); 3 file(s)" in text
    assert not [u for u in uids_a | uids_b if u in text], text
    # the same for an explicit list of files (checked from the headers)
    listed = [*files_a, *sorted(folder.glob("B_*"))]
    with pytest.raises(DicomSeriesError) as err:
        DicomSource(listed, case_id="c1")
    assert "2 mixed series" in str(err.value)
    assert not [u for u in uids_a | uids_b if u in str(err.value)]


def test_sop_classes_are_named_and_other_uids_scrubbed(tmp_path: Path) -> None:
    files, uids = _series(tmp_path / "series", "c")
    ds = pydicom.dcmread(files[2])
    del ds.PixelData
    ds.save_as(files[2])
    with pytest.raises(ImageFormatError) as err:
        load_case_slice(files[2], _mask(tmp_path), case_id="c1")
    assert "(SOP class MR Image Storage)" in str(err.value)
    assert not [u for u in uids if u in str(err.value)]
    uid = sorted(uids)[0]
    assert scrub_uids(f"ts 1.2.840.10008.1.2.1, series {uid}, 1.5 mm, v2.4.1") == (
        "ts Explicit VR Little Endian, series <UID>, 1.5 mm, v2.4.1"
    )
