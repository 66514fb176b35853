"""Writers: NIfTI slices overlay their source; DICOM output is valid and de-identified."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcrypt.medical import (
    encode_dicom_slice,
    encode_nifti_slice,
    load_case_slice,
    write_dicom_series,
)

BratsCase = Any  # the `brats` fixture items (tests/unit/medical/conftest.py)

PATIENT_NAME = "Doe^Jane^Quinn"
PATIENT_ID = "MRN-4815162342"


def _nifti_from_bytes(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(data))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codes", [None, "IAL"])
def test_nifti_slice_overlays_the_source_volume(
    brats: list[BratsCase], tmp_path: Path, codes: str | None
) -> None:
    case = brats[1]
    image_path, src_data, src_aff = case.image_path, case.image(), case.affine
    mask_path = case.mask_path
    if codes:  # the same case stored another way round must overlay just as well
        from nibabel import orientations as nio

        t = nio.ornt_transform(nio.io_orientation(src_aff), nio.axcodes2ornt(tuple(codes)))
        src_data = np.ascontiguousarray(nio.apply_orientation(src_data, t))
        src_aff = src_aff @ nio.inv_ornt_aff(t, case.image().shape)
        msk = np.ascontiguousarray(nio.apply_orientation(case.mask(), t))
        image_path, mask_path = tmp_path / "i.nii", tmp_path / "m.nii"
        nib.save(nib.Nifti1Image(src_data, src_aff), image_path)
        nib.save(nib.Nifti1Image(msk, src_aff), mask_path)
    s = load_case_slice(image_path, mask_path, case_id=case.case_id)
    rng = np.random.default_rng(0)
    protected = np.clip(s.array + rng.normal(0, 0.01, s.array.shape), 0, 1).astype(np.float32)
    out = _nifti_from_bytes(encode_nifti_slice(protected, s))
    assert out.shape == (s.array.shape[1], s.array.shape[0], 1)
    data = np.asarray(out.dataobj)[:, :, 0]
    # every output voxel lands on a source voxel centre holding the same anatomy
    ii, jj = np.meshgrid(np.arange(out.shape[0]), np.arange(out.shape[1]), indexing="ij")
    pts = np.stack([ii.ravel(), jj.ravel(), np.zeros(ii.size), np.ones(ii.size)])
    src_idx = np.linalg.inv(src_aff) @ out.affine @ pts
    rounded = np.rint(src_idx[:3]).astype(int)
    np.testing.assert_allclose(src_idx[:3], rounded, atol=1e-6)
    lo, hi = s.window
    source_vals = np.clip(src_data[tuple(rounded)], lo, hi).reshape(ii.shape)
    original = _nifti_from_bytes(encode_nifti_slice(s.array, s))
    np.testing.assert_allclose(np.asarray(original.dataobj)[:, :, 0], source_vals, atol=1e-4)
    # and the protected values are the protected image mapped back to source units
    np.testing.assert_allclose(data, (lo + protected * (hi - lo)).T, rtol=1e-5, atol=1e-4)
    assert int(out.header["sform_code"]) > 0


def _source_series(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    rng = np.random.default_rng(5)
    image = rng.normal(300.0, 40.0, size=(32, 28, 6)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[10:20, 8:16, 2] = 1
    aff = np.diag([-0.9, -0.9, 3.0, 1.0])
    aff[:3, 3] = [14.0, 12.0, -9.0]
    folder = tmp_path / "Doe_Jane_MRN-4815162342"
    files = write_dicom_series(image, aff, folder, patient_name=PATIENT_NAME, patient_id=PATIENT_ID)
    nib.save(nib.Nifti1Image(mask, aff), tmp_path / "mask.nii.gz")
    ds = pydicom.dcmread(files[2], stop_before_pixels=True)
    meta = {el.keyword: str(el.value) for el in ds if el.keyword and el.VR not in ("SQ",)}
    return folder, tmp_path / "mask.nii.gz", meta


@pytest.mark.timeout(60)
def test_dicom_output_is_deidentified(tmp_path: Path) -> None:
    folder, mask, meta = _source_series(tmp_path)
    s = load_case_slice(folder, mask, case_id="c1")
    data = encode_dicom_slice(s.array, s, series_description="medcrypt protected", source_meta=meta)
    secrets = [
        PATIENT_NAME,
        "Doe",
        "Jane",
        "Quinn",
        PATIENT_ID,
        "4815162342",
        meta["StudyInstanceUID"],
        meta["SeriesInstanceUID"],
        meta["SOPInstanceUID"],
        meta["FrameOfReferenceUID"],
        meta["PatientBirthDate"],
        meta["StudyDate"],
    ]
    for secret in secrets:
        assert secret.encode() not in data, f"{secret!r} survived de-identification"
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert ds.Modality == "MR"
    assert str(ds.PatientName) == "" and ds.PatientID == ""
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.9, 0.9])
    assert list(ds.PatientOrientation) == ["L", "P"]
    # pixels: rounded 16-bit codes, mapped back to source units by the rescale
    codes = ds.pixel_array.astype(np.float64)
    np.testing.assert_allclose(codes / 65535, s.array, atol=0.5 / 65535 + 1e-7)
    lo, hi = s.window
    np.testing.assert_allclose(
        codes * float(ds.RescaleSlope) + float(ds.RescaleIntercept),
        s.to_source_units(),
        atol=(hi - lo) * 1e-5,
    )
    # fresh UIDs each time unless entropy is given (then deterministic)
    again = encode_dicom_slice(s.array, s, series_description="x", uid_entropy=["k", "c1"])
    same = encode_dicom_slice(s.array, s, series_description="x", uid_entropy=["k", "c1"])
    assert again == same


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("with_meta", [True, False])
def test_dicom_output_passes_dciodvfy(tmp_path: Path, with_meta: bool) -> None:
    folder, mask, meta = _source_series(tmp_path)
    s = load_case_slice(folder, mask, case_id="c1")
    meta = {**meta, "BodyPartExamined": "HEAD"} if with_meta else {}
    out = tmp_path / "out.dcm"
    out.write_bytes(
        encode_dicom_slice(s.array, s, series_description="medcrypt protected", source_meta=meta)
    )
    result = subprocess.run(
        ["dciodvfy", str(out)], capture_output=True, text=True, timeout=30, check=False
    )
    report = result.stdout + result.stderr
    assert "SCImage" in report  # it recognised the IOD
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert errors == [], report


def test_dicom_writer_refuses_a_wrong_shape(tmp_path: Path) -> None:
    folder, mask, _ = _source_series(tmp_path)
    s = load_case_slice(folder, mask, case_id="c1")
    with pytest.raises(ValueError, match="shape"):
        encode_dicom_slice(np.zeros((3, 3)), s, series_description="x")
    with pytest.raises(ValueError, match="shape"):
        encode_nifti_slice(np.zeros((3, 3)), s)
