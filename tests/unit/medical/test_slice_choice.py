"""Choosing the largest-tumour axial slice: real BraTS cases, re-orientation, ties, areas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations as nio

from medcrypt.errors import EmptyMaskError
from medcrypt.medical import choose_slice, load_case_slice

BratsCase = Any  # the `brats` fixture items (tests/unit/medical/conftest.py)


def _expected_slice(mask: np.ndarray) -> tuple[int, list[int], int]:
    """Independent numpy: the BraTS third axis is axial and points superior (README)."""
    counts = (mask > 0).sum(axis=(0, 1))
    tied = np.flatnonzero(counts == counts.max()).tolist()
    return tied[0], tied, int(counts.max())


@pytest.mark.timeout(120)
def test_brats_largest_tumour_slice_matches_numpy(brats: list[BratsCase]) -> None:
    ties = 0
    for case in brats:
        mask = case.mask()
        expected, tied, voxels = _expected_slice(mask)
        s = load_case_slice(case.image_path, case.mask_path, case_id=case.case_id)
        assert s.choice.axis == 2
        assert s.choice.stored_index == expected
        assert s.choice.canonical_index == expected
        assert list(s.choice.tied_indices) == tied
        assert s.choice.area_mm2 == pytest.approx(voxels * 1.0)  # 1 mm isotropic
        assert s.choice.fallback is None
        ties += len(tied) > 1
        # the image plane, displayed: rows posterior-wards, columns to patient left (L,P,S)
        plane = np.asarray(nib.load(case.image_path).dataobj[:, :, expected])
        display = plane.T.astype(np.float64)
        lo, hi = s.window
        assert lo < hi
        assert s.array.dtype == np.float32
        assert float(s.array.min()) >= 0.0 and float(s.array.max()) <= 1.0
        np.testing.assert_allclose(s.to_source_units(), np.clip(display, lo, hi), atol=1e-4)
        # world position of the slice centre from the file's own affine
        centre = case.affine @ np.array([119.5, 119.5, expected, 1.0])
        np.testing.assert_allclose(s.choice.world_position, centre[:3])
    assert ties == 1, "the README says exactly one BraTS sample case has a tied largest area"


def _reorient(data: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    t = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(tuple(codes)))
    return nio.apply_orientation(data, t), affine @ nio.inv_ornt_aff(t, data.shape)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codes", ["IAL", "RSA"])
def test_reoriented_case_gives_the_same_anatomical_slice(
    brats: list[BratsCase], tmp_path: Path, codes: str
) -> None:
    case = next(c for c in brats if c.case_id.endswith("0005_1"))  # the case with a tie
    reference = load_case_slice(case.image_path, case.mask_path, case_id=case.case_id)
    img, aff = _reorient(case.image(), case.affine, codes)
    msk, _ = _reorient(case.mask(), case.affine, codes)
    assert nib.aff2axcodes(aff) == tuple(codes)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(img), aff), tmp_path / "image.nii")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(msk), aff), tmp_path / "mask.nii")
    s = load_case_slice(tmp_path / "image.nii", tmp_path / "mask.nii", case_id="reoriented")
    axial = codes.index("I") if "I" in codes else codes.index("S")
    assert s.choice.axis == axial
    assert s.choice.canonical_index == reference.choice.canonical_index
    assert len(s.choice.tied_indices) == len(reference.choice.tied_indices) == 2
    if codes[axial] == "I":
        assert s.choice.stored_index == 154 - reference.choice.canonical_index
    np.testing.assert_allclose(s.choice.world_position, reference.choice.world_position)
    np.testing.assert_allclose(s.affine, reference.affine, atol=1e-9)
    np.testing.assert_array_equal(s.array, reference.array)
    assert s.choice.area_mm2 == reference.choice.area_mm2


@pytest.mark.timeout(120)
def test_mask_on_another_grid_in_the_same_world_is_resampled(
    brats: list[BratsCase], tmp_path: Path
) -> None:
    case = brats[0]
    reference = load_case_slice(case.image_path, case.mask_path, case_id=case.case_id)
    msk, aff = _reorient(case.mask(), case.affine, "SRA")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(msk), aff), tmp_path / "mask.nii")
    s = load_case_slice(case.image_path, tmp_path / "mask.nii", case_id="resampled")
    assert s.choice.stored_index == reference.choice.stored_index
    assert s.choice.tied_indices == reference.choice.tied_indices


def _grid(spacing: tuple[float, float, float]) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def test_area_is_in_mm2_and_uses_the_affine_axial_axis() -> None:
    # Stored (S, A, R): axis 0 is axial; the in-plane voxel area is 0.5 x 0.8 mm.
    mask = np.zeros((5, 4, 6), dtype=np.uint8)
    mask[1, :2, :3] = 1  # 6 voxels
    mask[3, :3, :3] = 2  # 9 voxels
    aff = np.zeros((4, 4))
    aff[2, 0], aff[1, 1], aff[0, 2], aff[3, 3] = 3.0, 0.5, 0.8, 1.0  # axis0->S, 1->A, 2->R
    choice = choose_slice(mask, aff)
    assert choice.axis == 0
    assert choice.stored_index == 3
    assert choice.area_mm2 == pytest.approx(9 * 0.5 * 0.8)
    only_one = choose_slice(mask, aff, tumour_labels=[1])
    assert only_one.stored_index == 1
    assert only_one.area_mm2 == pytest.approx(6 * 0.4)


def test_tie_goes_to_the_most_inferior_slice_in_either_storage_direction() -> None:
    mask = np.zeros((3, 3, 8), dtype=np.uint8)
    mask[:, :, 2] = 1
    mask[:, :, 5] = 1
    up = choose_slice(mask, _grid((1.0, 1.0, 2.0)))
    assert (up.stored_index, up.canonical_index, up.tied_indices) == (2, 2, (2, 5))
    down_aff = np.diag([1.0, 1.0, -2.0, 1.0])  # axis 2 points inferior
    down = choose_slice(mask, down_aff)
    # stored 5 is canonical 2 (more inferior than stored 2 = canonical 5)
    assert (down.stored_index, down.canonical_index) == (5, 2)


def test_empty_mask_is_an_error_unless_a_recorded_fallback_is_asked_for() -> None:
    mask = np.zeros((6, 6, 5), dtype=np.uint8)
    mask[2, 2, 1] = 3  # not a tumour label below
    with pytest.raises(EmptyMaskError, match=r"case 'c1'.*expected at least one tumour voxel"):
        choose_slice(mask, _grid((1, 1, 1)), tumour_labels=[1, 4], case_id="c1", uri="m.nii")
    image = np.zeros((6, 6, 5), dtype=np.float32)
    image[1:5, 1:5, 3] = 1.0  # largest head area on slice 3
    image[2:4, 2:4, 1] = 1.0
    choice = choose_slice(
        mask, _grid((1, 1, 1)), tumour_labels=[1, 4], fallback="largest_brain", image=image
    )
    assert choice.stored_index == 3
    assert choice.fallback is not None and "largest_brain" in choice.fallback
    assert choice.area_mm2 == 0.0
