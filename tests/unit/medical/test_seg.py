"""DICOM SEG masks (highdicom) give the same slice as the equivalent NIfTI mask."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcrypt.errors import ImageFormatError
from medcrypt.medical import load_case_slice, read_mask, write_dicom_series


def _series(tmp_path: Path) -> tuple[Path, list[Path], np.ndarray, np.ndarray]:
    aff = np.diag([-0.9, -0.9, 3.0, 1.0])
    aff[:3, 3] = [14.0, 12.0, -9.0]
    img = np.random.default_rng(0).random((16, 12, 6)).astype(np.float32)
    files = write_dicom_series(img, aff, tmp_path / "series", uid_entropy=["seg-test"])
    return tmp_path / "series", files, img, aff


def _segment(number: int, label: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=hd.sr.CodedConcept(
            "49755003", "SCT", "Morphologically abnormal structure"
        ),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type="MANUAL",
    )


def _write_seg(files: list[Path], frames: np.ndarray, out: Path) -> Path:
    """``frames``: (slices, rows, cols) with segment numbers 0..2."""
    sources = [pydicom.dcmread(f) for f in files]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.stack([frames == 1, frames == 2], axis=-1),
        segmentation_type="BINARY",
        segment_descriptions=[_segment(1, "necrosis"), _segment(2, "enhancing")],
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medcrypt-test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(out)
    return out


@pytest.mark.timeout(60)
def test_seg_mask_matches_the_nifti_mask(tmp_path: Path) -> None:
    folder, files, img, aff = _series(tmp_path)
    labels = np.zeros(img.shape, dtype=np.uint8)  # (cols i, rows j, slices k)
    labels[3:9, 2:6, 1] = 1  # 24 voxels, segment 1
    labels[4:8, 3:7, 4] = 2  # 16 voxels, segment 2
    labels[2:4, 2:4, 4] = 1  # +4: slice 4 has 20
    frames = np.transpose(labels, (2, 1, 0))  # DICOM frames: (slice, row, column)
    seg_path = _write_seg(files, frames, tmp_path / "seg.dcm")
    nib.save(nib.Nifti1Image(labels, aff), tmp_path / "mask.nii.gz")

    from_seg = read_mask(seg_path, case_id="s", reference=read_mask(tmp_path / "mask.nii.gz"))
    np.testing.assert_array_equal(from_seg.array, labels)
    a = load_case_slice(folder, seg_path, case_id="seg")
    b = load_case_slice(folder, tmp_path / "mask.nii.gz", case_id="nifti")
    assert a.choice == b.choice
    assert a.choice.stored_index == 1
    only_two = load_case_slice(folder, seg_path, case_id="seg", tumour_labels=[2])
    assert only_two.choice.stored_index == 4


def test_non_seg_dicom_is_not_a_mask(tmp_path: Path) -> None:
    folder, files, _, _ = _series(tmp_path)
    with pytest.raises(ImageFormatError, match="DICOM SEG") as info:
        load_case_slice(folder, files[0], case_id="c")
    assert info.value.uri == str(files[0])
