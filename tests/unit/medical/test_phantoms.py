"""Synthetic phantoms: determinism, shapes, ranges, balance, anatomy and the 2D/3D link."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medcrypt.medical import CLASS_NAMES, make_phantom_slices, make_phantom_volume


def test_class_names_are_the_papers_five() -> None:
    assert CLASS_NAMES == (
        "meningioma",
        "chordoma",
        "schwannoma",
        "pituitary_adenoma",
        "craniopharyngioma",
    )


@pytest.mark.timeout(60)
def test_slices_shape_dtype_range_and_balance() -> None:
    images, labels = make_phantom_slices(4, size=32, seed=3)
    assert images.shape == (20, 32, 32)
    assert images.dtype == np.float32
    assert labels.dtype == np.int64
    assert float(images.min()) >= 0.0
    assert float(images.max()) <= 1.0
    assert np.bincount(labels, minlength=5).tolist() == [4, 4, 4, 4, 4]
    # Interleaved classes, as the contract says.
    assert labels[:10].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    # Real images, not blank: a bright head on a dark background.
    assert float(images[:, 0, 0].max()) < 0.2
    assert float(images[:, 16, 16].mean()) > 0.2


@pytest.mark.timeout(60)
def test_slices_deterministic_by_seed_and_seeds_differ() -> None:
    a, la = make_phantom_slices(2, size=32, seed=11)
    b, lb = make_phantom_slices(2, size=32, seed=11)
    c, _ = make_phantom_slices(2, size=32, seed=12)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    # Every case differs from every other (per-case variation, not one template per class).
    flat = a.reshape(len(a), -1)
    dists = np.abs(flat[:, None, :] - flat[None, :, :]).mean(axis=2)
    assert float(dists[~np.eye(len(a), dtype=bool)].min()) > 0.005


@pytest.mark.timeout(60)
def test_each_class_has_its_own_site_and_size() -> None:
    # Tumour centroid (mm from the volume centre) and size per class, over a few cases.
    lateral: dict[int, list[float]] = {k: [] for k in range(5)}
    radial: dict[int, list[float]] = {k: [] for k in range(5)}
    size: dict[int, list[int]] = {k: [] for k in range(5)}
    for label in range(5):
        for seed in range(6):
            _, mask, affine = make_phantom_volume(label, shape=(48, 48, 20), seed=seed)
            ijk = np.argwhere(mask > 0).mean(axis=0)
            xyz = affine[:3, :3] @ ijk + affine[:3, 3]
            lateral[label].append(abs(float(xyz[0])))
            radial[label].append(float(np.hypot(xyz[0], xyz[1])))
            size[label].append(int((mask > 0).sum()))
    med = {k: float(np.median(v)) for k, v in lateral.items()}
    rad = {k: float(np.median(v)) for k, v in radial.items()}
    vol = {k: float(np.median(v)) for k, v in size.items()}
    # schwannoma (CPA) is lateral; pituitary adenoma, chordoma, craniopharyngioma are midline
    assert med[2] > 4.0
    assert max(med[1], med[3], med[4]) < 3.0
    # meningioma sits at the convexity, far from the centre; the adenoma is the smallest.
    assert rad[0] > max(rad[1], rad[3], rad[4]) + 5.0
    assert vol[3] < min(vol[0], vol[1], vol[2], vol[4])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="n_per_class"):
        make_phantom_slices(0, seed=0)
    with pytest.raises(ValueError, match="label"):
        make_phantom_volume(5, seed=0)
    with pytest.raises(ValueError, match="shape"):
        make_phantom_volume(0, shape=(64, 64), seed=0)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("label", range(5))
def test_volume_mask_affine(label: int) -> None:
    volume, mask, affine = make_phantom_volume(label, shape=(48, 48, 20), seed=7)
    assert volume.shape == (48, 48, 20) and volume.dtype == np.float32
    assert mask.shape == volume.shape and mask.dtype == np.uint8
    assert float(volume.min()) >= 0.0 and float(volume.max()) <= 1.0
    values = set(np.unique(mask).tolist())
    assert values <= {0, 1, 2, 3, 4}
    assert len(values) >= 2  # background plus at least one tumour sub-region
    # Anisotropic RAS+ affine: equal in-plane spacing, thicker slices, positive diagonal.
    assert affine.shape == (4, 4)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    assert spacing[0] == pytest.approx(spacing[1])
    assert spacing[2] > spacing[0]
    assert np.all(np.diag(affine)[:3] > 0)
    # Tumour voxels lie inside the head: the region enclosed by the bright scalp ring.
    head = np.stack(
        [ndimage.binary_fill_holes(volume[:, :, k] > 0.4) for k in range(volume.shape[2])],
        axis=2,
    )
    assert bool(head[mask > 0].all())
    assert float(head.mean()) < 0.8  # and the head does not fill the field of view
    assert float(volume[0, 0, :].max()) < 0.2


@pytest.mark.timeout(60)
def test_volume_deterministic_and_largest_slice_looks_like_the_2d_family() -> None:
    v1, m1, _ = make_phantom_volume(2, seed=4)
    v2, m2, _ = make_phantom_volume(2, seed=4)
    v3, _, _ = make_phantom_volume(2, seed=5)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(v1, v3)
    k = int(np.argmax((m1 > 0).sum(axis=(0, 1))))
    # Displayed radiologically: anterior up, patient right on the left.
    shown = v1[:, :, k].T[::-1, ::-1]
    images, _ = make_phantom_slices(6, size=64, seed=0)
    family_mean = images.mean()
    assert abs(float(shown.mean()) - float(family_mean)) < 0.08
    # The head fills the middle and not the corners, as in the slices.
    assert float(shown[28:36, 28:36].mean()) > 0.2
    assert float(shown[:4, :4].mean()) < 0.1
