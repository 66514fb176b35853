"""Every bad input of issue 3 raises ImageFormatError (or a subclass) naming case and file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcrypt.errors import (
    DicomSeriesError,
    EmptyMaskError,
    GridMismatchError,
    ImageFormatError,
)
from medcrypt.medical import load_case_slice, read_volume, write_dicom_series

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
CASE = "case-007"


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 10.0, size=(12, 10, 8)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[3:7, 2:6, 4] = 1
    mask[4:6, 3:5, 3] = 2
    return image, mask


def _save(
    array: np.ndarray, path: Path, affine: np.ndarray = AFFINE, *, world: bool = True
) -> Path:
    img = nib.Nifti1Image(array, affine)
    code = 1 if world else 0
    img.set_qform(affine, code=code)
    img.set_sform(affine, code=code)
    nib.save(img, path)
    return path


def _case(tmp_path: Path, *, gz: bool = True) -> tuple[Path, Path]:
    image, mask = _volume()
    ext = ".nii.gz" if gz else ".nii"
    return _save(image, tmp_path / f"image{ext}"), _save(mask, tmp_path / f"mask{ext}")


def _raises(
    kind: type[ImageFormatError], image: Path, mask: Path, culprit: Path, words: str
) -> ImageFormatError:
    with pytest.raises(kind) as info:
        load_case_slice(image, mask, case_id=CASE)
    err = info.value
    assert isinstance(err, ImageFormatError)
    assert err.case_id == CASE
    assert err.uri == str(culprit)
    text = str(err)
    assert CASE in text and str(culprit) in text
    assert words.lower() in text.lower(), text
    return err


def test_a_good_synthetic_case_loads(tmp_path: Path) -> None:
    image, mask = _case(tmp_path)
    s = load_case_slice(image, mask, case_id=CASE)
    assert s.choice.stored_index == 4
    assert s.choice.area_mm2 == 16.0


@pytest.mark.parametrize("which", ["image", "mask"])
def test_truncated_nii_gz(tmp_path: Path, which: str) -> None:
    image, mask = _case(tmp_path)
    culprit = image if which == "image" else mask
    data = culprit.read_bytes()
    culprit.write_bytes(data[: len(data) // 2])
    _raises(ImageFormatError, image, mask, culprit, "truncated")


@pytest.mark.parametrize("keep", [0, 40])
def test_nii_gz_cut_inside_the_header(tmp_path: Path, keep: int) -> None:
    image, mask = _case(tmp_path)
    image.write_bytes(image.read_bytes()[:keep])
    _raises(ImageFormatError, image, mask, image, "expected a NIfTI image")


def test_truncated_uncompressed_nii(tmp_path: Path) -> None:
    image, mask = _case(tmp_path, gz=False)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) - 100])
    _raises(ImageFormatError, image, mask, image, "truncated")


@pytest.mark.parametrize("name", ["image.nii.gz", "image.nii", "image.dcm"])
def test_bytes_that_are_not_an_image(tmp_path: Path, name: str) -> None:
    _, mask = _case(tmp_path)
    junk = tmp_path / name
    junk.write_bytes(np.random.default_rng(1).bytes(4000))
    _raises(ImageFormatError, junk, mask, junk, "expected")


def test_folder_without_dicom(tmp_path: Path) -> None:
    _, mask = _case(tmp_path)
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "notes.txt").write_text("not dicom")
    _raises(ImageFormatError, folder, mask, folder, "no DICOM image files")


def test_4d_volume_where_3d_is_expected(tmp_path: Path) -> None:
    image, mask = _case(tmp_path)
    four_d = np.stack([_volume()[0]] * 2, axis=-1)
    _save(four_d, image)
    _raises(ImageFormatError, image, mask, image, "expected a 3D image")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_voxels(tmp_path: Path, bad: float) -> None:
    image, mask = _case(tmp_path)
    data = _volume()[0]
    data[5, 5, 4] = bad  # on the slice that will be chosen
    _save(data, image)
    _raises(ImageFormatError, image, mask, image, "NaN/Inf")
    with pytest.raises(ImageFormatError, match="NaN/Inf"):
        read_volume(image, case_id=CASE)


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_nan_or_inf_in_a_float_mask(tmp_path: Path, bad: float) -> None:
    image, mask = _case(tmp_path)
    labels = _volume()[1].astype(np.float32)
    labels[0, 0, 0] = bad
    _save(labels, mask)
    _raises(ImageFormatError, image, mask, mask, "NaN/Inf")


def test_fractional_mask_labels(tmp_path: Path) -> None:
    image, mask = _case(tmp_path)
    labels = _volume()[1].astype(np.float32)
    labels[1, 1, 1] = 0.5
    _save(labels, mask)
    _raises(ImageFormatError, image, mask, mask, "fractional")


def test_mask_on_a_grid_without_world_space(tmp_path: Path) -> None:
    image, mask = _case(tmp_path)
    _save(np.zeros((6, 5, 4), dtype=np.uint8) + 1, mask, np.eye(4), world=False)
    err = _raises(GridMismatchError, image, mask, mask, "no world space")
    assert "(6, 5, 4)" in str(err)


def test_mask_in_another_world_space(tmp_path: Path) -> None:
    image, mask = _case(tmp_path)
    far = AFFINE.copy()
    far[:3, 3] = [500.0, -300.0, 80.0]
    _save(_volume()[1], mask, far)
    _raises(GridMismatchError, image, mask, mask, "share world space")


def test_empty_mask(tmp_path: Path) -> None:
    image, mask = _case(tmp_path)
    _save(np.zeros((12, 10, 8), dtype=np.uint8), mask)
    _raises(EmptyMaskError, image, mask, mask, "empty tumour mask")


def test_empty_mask_with_recorded_fallback(tmp_path: Path) -> None:
    image, mask = _case(tmp_path)
    data = np.zeros((12, 10, 8), dtype=np.float32)
    data[2:10, 2:8, 6] = 5.0
    _save(data, image)
    _save(np.zeros((12, 10, 8), dtype=np.uint8), mask)
    s = load_case_slice(image, mask, case_id=CASE, fallback="largest_brain")
    assert s.choice.stored_index == 6
    assert s.choice.fallback is not None and "empty" in s.choice.fallback


def test_unselected_labels_count_as_empty(tmp_path: Path) -> None:
    image, mask = _case(tmp_path)
    with pytest.raises(EmptyMaskError, match=r"labels \[4\]"):
        load_case_slice(image, mask, case_id=CASE, tumour_labels=[4])
    s = load_case_slice(image, mask, case_id=CASE, tumour_labels=[2])
    assert s.choice.stored_index == 3


def _dicom_case(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    image, mask = _volume()
    folder = tmp_path / "series"
    files = write_dicom_series(image, AFFINE, folder, uid_entropy=["a"])
    return folder, _save(mask, tmp_path / "mask.nii.gz"), files


def test_dicom_series_with_a_missing_slice(tmp_path: Path) -> None:
    folder, mask, files = _dicom_case(tmp_path)
    files[2].unlink()
    _raises(DicomSeriesError, folder, mask, folder, "1 missing slice")


def test_dicom_series_with_inconsistent_spacing(tmp_path: Path) -> None:
    folder, mask, files = _dicom_case(tmp_path)
    ds = pydicom.dcmread(files[5])
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 0.7
    ds.save_as(files[5])
    _raises(DicomSeriesError, folder, mask, folder, "inconsistent slice spacing")


def test_two_dicom_series_mixed(tmp_path: Path) -> None:
    folder, mask, _ = _dicom_case(tmp_path)
    write_dicom_series(_volume()[0], AFFINE, tmp_path / "other", uid_entropy=["b"])
    for f in (tmp_path / "other").iterdir():
        f.rename(folder / f"other_{f.name}")
    _raises(DicomSeriesError, folder, mask, folder, "2 mixed series")


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    folder, mask, files = _dicom_case(tmp_path)
    ds = pydicom.dcmread(files[4])
    del ds.PixelData
    ds.save_as(files[4])
    # GDCM leaves the object out of the series; the reader names it rather than a gap
    _raises(ImageFormatError, folder, mask, files[4], "without pixel data")
    # a single object given directly
    _raises(ImageFormatError, files[4], mask, files[4], "without pixel data")


def test_two_acquisitions_under_one_series_uid(tmp_path: Path) -> None:
    folder, mask, files = _dicom_case(tmp_path)
    ds = pydicom.dcmread(files[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["echo-2"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.EchoNumbers = 2
    ds.save_as(folder / "echo2.dcm")
    _raises(DicomSeriesError, folder, mask, folder, "repeated or unordered positions")
