"""Orientation invariance on small synthetic volumes: all 48 storage orders, oblique affines."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medcrypt.medical import (
    align_mask,
    axial_axis,
    choose_slice,
    display_geometry,
    extract_slice,
    reorient,
)
from medcrypt.medical._values import Volume


def _all_axcodes() -> list[str]:
    out = []
    for perm in itertools.permutations([("L", "R"), ("P", "A"), ("I", "S")]):
        for picks in itertools.product([0, 1], repeat=3):
            out.append("".join(pair[p] for pair, p in zip(perm, picks, strict=True)))
    return out


def _case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    image = rng.random((9, 7, 6)).astype(np.float32) * 100
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[2:6, 1:4, 2] = 1  # 12 voxels
    mask[3:5, 2:5, 4] = 1  # 6
    mask[1:7, 3:5, 3] = 2  # 12: ties with slice 2
    affine = np.diag([0.8, 1.1, 2.5, 1.0])  # RAS storage, anisotropic
    affine[:3, 3] = [-3.0, 4.0, 10.0]
    return image, mask, affine


def _volume(image: np.ndarray, affine: np.ndarray) -> Volume:
    return Volume(image, affine, (1.0, 1.0, 1.0), ("R", "A", "S"), "mem")


def test_every_storage_order_picks_and_shows_the_same_slice() -> None:
    image, mask, affine = _case()
    ref_choice = choose_slice(mask, affine)
    assert ref_choice.canonical_index == 2 and ref_choice.tied_indices == (2, 3)
    assert ref_choice.area_mm2 == pytest.approx(12 * 0.8 * 1.1)
    ref = extract_slice(_volume(image, affine), ref_choice)
    codes = _all_axcodes()
    assert len(codes) == 48
    for axcodes in codes:
        img2, aff2 = reorient(image, affine, axcodes)
        msk2, _ = reorient(mask, affine, axcodes)
        choice = choose_slice(msk2, aff2)
        assert choice.canonical_index == 2, axcodes
        assert choice.area_mm2 == pytest.approx(ref_choice.area_mm2)
        assert len(choice.tied_indices) == 2
        np.testing.assert_allclose(choice.world_position, ref_choice.world_position, atol=1e-9)
        s = extract_slice(_volume(img2, aff2), choice)
        np.testing.assert_array_equal(s.array, ref.array)
        np.testing.assert_allclose(s.affine, ref.affine, atol=1e-9)


def test_displayed_rows_run_posterior_and_columns_to_patient_left() -> None:
    image, _, affine = _case()
    geometry = display_geometry(affine, image.shape, 2, 2)
    # RAS storage: display column steps must point to -x (left), row steps to -y (posterior)
    assert geometry.affine[0, 0] < 0 and abs(geometry.affine[1, 0]) < 1e-12
    assert geometry.affine[1, 1] < 0 and abs(geometry.affine[0, 1]) < 1e-12
    assert geometry.affine[2, 2] > 0  # third column points superior
    plane = image[:, :, 2]
    np.testing.assert_array_equal(geometry.from_display(geometry.to_display(plane)), plane)


def test_oblique_affine_uses_the_axis_closest_to_superior() -> None:
    angle = np.deg2rad(25.0)
    rot = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    affine = np.eye(4)
    # stored axes: 0 -> (tilted) superior, 1 -> right, 2 -> (tilted) anterior
    affine[:3, :3] = rot @ np.array([[0, 1.0, 0], [0, 0, 1.0], [2.0, 0, 0]])
    assert axial_axis(affine) == (0, True)
    mask = np.zeros((5, 6, 7), dtype=np.uint8)
    mask[3, 1:4, 1:5] = 1
    choice = choose_slice(mask, affine)
    assert (choice.axis, choice.stored_index) == (0, 3)
    assert choice.area_mm2 == pytest.approx(12.0)  # in-plane voxels are 1 x 1 mm


def test_grid_tolerance_and_nearest_neighbour_resampling() -> None:
    _, mask, affine = _case()
    nudged = affine.copy()
    nudged[:3, 3] += 1e-3  # far below 5% of a voxel: the same grid, returned as is
    assert align_mask(mask, nudged, mask.shape, affine) is mask
    # a mask on a grid of half the in-plane resolution, same world: resampled exactly
    fine = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)
    fine_aff = affine.copy()
    fine_aff[0, 0], fine_aff[1, 1] = 0.4, 0.55
    fine_aff[:3, 3] = affine[:3, 3] - np.array([0.2, 0.275, 0.0])
    back = align_mask(fine, fine_aff, mask.shape, affine)
    np.testing.assert_array_equal(back, mask)


def test_robust_window_ignores_outliers_and_background() -> None:
    from medcrypt.medical import foreground_mask, robust_window

    plane = np.zeros((40, 40))
    plane[5:35, 5:35] = np.linspace(100.0, 200.0, 900).reshape(30, 30)
    plane[20, 20] = 1e6  # one hot pixel
    assert foreground_mask(plane).sum() == 900
    lo, hi = robust_window(plane)
    assert 100.0 <= lo < 102.0
    assert 198.0 < hi <= 200.0
    constant = np.full((8, 8), 3.0)
    assert robust_window(constant) == (3.0, 4.0)
