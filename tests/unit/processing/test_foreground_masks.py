"""The vectorised ``foreground_masks`` equals ``foreground_mask`` per image, bit for bit.

Real slices come from figshare-btd (``../shared/data/figshare-btd``, read by path, never
copied into the repo); those tests skip where the shared data is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from skimage.filters import threshold_otsu

from medcrypt.processing import foreground_mask, foreground_masks
from medcrypt.processing.protection._foreground import _bin_counts, _bin_edges, _otsu

ROOT = Path(__file__).resolve().parents[3]
FIGSHARE = ROOT.parent / "shared" / "data" / "figshare-btd" / "train"


def _per_image(images: np.ndarray) -> np.ndarray:
    return np.stack([foreground_mask(x) for x in images])


def _assert_same(images: np.ndarray) -> None:
    got = foreground_masks(images)
    assert got.dtype == bool and got.shape == images.shape
    np.testing.assert_array_equal(got, _per_image(images))


def _figshare(size: int) -> np.ndarray:
    paths = sorted(FIGSHARE.glob("*/*.png"))
    if not paths:
        pytest.skip(f"figshare-btd not found under {FIGSHARE}")
    picked = paths[:: max(1, len(paths) // 40)][:40]  # spread over the three classes
    out = []
    for path in picked:
        with Image.open(path) as im:
            grey = im.convert("L")
            if grey.size != (size, size):
                grey = grey.resize((size, size), Image.Resampling.BOX)
            out.append(np.asarray(grey, dtype=np.float32) / 255.0)
    return np.stack(out)


@pytest.mark.parametrize("size", [256, 64])
def test_foreground_masks_equal_per_image_on_real_mri(size: int) -> None:
    x = _figshare(size)
    assert len(x) == 40
    _assert_same(x)
    _assert_same(x.astype(np.float64))
    m = foreground_masks(x)
    assert 0 < m.mean() < 1  # real anatomy on a black background, neither extreme


def _disc(size: int, r: float, centre: tuple[float, float]) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - centre[0], xx - centre[1]) < r


def _edge_cases(size: int = 48) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    head = _disc(size, size / 3, (size / 2, size / 2))
    blob = np.where(head, 0.6 + 0.05 * rng.standard_normal((size, size)), 0.0)
    holes = np.where(_disc(size, size / 8, (size / 2, size / 2)), 0.03, blob)
    ring = np.where(head & ~_disc(size, size / 5, (size / 2, size / 2)), 0.7, 0.0)
    specks = blob.copy()
    specks[2, 2] = specks[2, size - 3] = specks[size - 2, 4] = 0.9  # one-pixel specks
    specks[size - 4 : size - 2, size - 4 : size - 2] = 0.9  # a 2x2 speck on the border
    lone_speck = np.zeros((size, size))
    lone_speck[5, 5:8] = 0.8  # 3 pixels, under the 4-pixel floor, but the only component: kept
    two_specks = lone_speck.copy()
    two_specks[20, 30:33] = 0.8  # two such components: both dropped
    edge_touching = np.where(_disc(size, size / 2, (0, size / 2)), 0.5, 0.0)
    edge_touching[2:6, size // 2 - 2 : size // 2 + 2] = 0.0  # a hole open to the border
    gradient = np.tile(np.linspace(0.0, 1.0, size), (size, 1))
    noise = rng.uniform(0.0, 1.0, (size, size))
    return {
        "constant": np.full((size, size), 0.4),
        "all_black": np.zeros((size, size)),
        "all_white": np.ones((size, size)),
        "single_component": np.where(head, 0.6, 0.0),
        "noisy_head": np.clip(blob + rng.uniform(0, 0.02, blob.shape), 0, 1),
        "holes": holes,
        "ring": ring,
        "specks": specks,
        "lone_speck": lone_speck,
        "two_specks": two_specks,
        "edge_touching": edge_touching,
        "gradient": gradient,
        "noise": noise,
        "one_bright_pixel": np.where(np.arange(size * size).reshape(size, size) == 7, 1.0, 0.2),
        "two_levels_flat_percentiles": np.where(rng.uniform(size=(size, size)) < 0.005, 1.0, 0.0),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_foreground_masks_equal_per_image_on_edge_cases(dtype: type) -> None:
    cases = _edge_cases()
    x = np.stack(list(cases.values())).astype(dtype)
    _assert_same(x)
    for name, image in cases.items():  # alone too: a batch of one, and no neighbours
        got = foreground_masks(image[None].astype(dtype))
        np.testing.assert_array_equal(got[0], foreground_mask(image.astype(dtype)), err_msg=name)
    masks = foreground_masks(x)
    assert not masks[:3].any()  # constant, black, white: nothing to protect
    assert masks[list(cases).index("lone_speck")].any()
    assert not masks[list(cases).index("two_specks")].any()


def test_foreground_masks_on_odd_shapes_and_uint8() -> None:
    rng = np.random.default_rng(5)
    for shape in [(3, 1, 9), (2, 9, 1), (2, 5, 7), (4, 200, 130)]:
        _assert_same(rng.uniform(size=shape) * (rng.uniform(size=shape) > 0.4))
    for shape in [(1, 400, 520), (1, 700, 650)]:  # dilation radius 3 and 5
        yy, xx = np.mgrid[: shape[1], : shape[2]]
        head = np.hypot(yy - shape[1] / 2, xx - shape[2] / 2) < shape[1] / 3
        _assert_same(np.where(head, rng.uniform(0.3, 1.0, shape), 0.0))
    codes = (rng.uniform(size=(3, 40, 40)) * 255).astype(np.uint8)
    _assert_same(codes)  # integer input, converted to float64 as foreground_mask does


def test_foreground_masks_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from medcrypt.processing.protection import _foreground

    x = np.stack(list(_edge_cases(32).values()))
    whole = foreground_masks(x)
    monkeypatch.setattr(_foreground, "_CHUNK_PIXELS", 3 * 32 * 32)  # 3 slices, a ragged last
    np.testing.assert_array_equal(foreground_masks(x), whole)


def test_foreground_masks_hand_odd_images_to_the_per_image_function() -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(4, 24, 24))
    x[1, 3, 3] = np.nan  # percentiles are nan: the per-image function gives an empty mask
    x[2, :, :] = 0.25
    _assert_same(x)
    assert not foreground_masks(x)[1].any()
    narrow = np.ones((2, 16, 16))
    narrow[1, ::2] = np.nextafter(1.0, 2.0)  # two adjacent floats: np.histogram refuses it
    with pytest.raises(ValueError, match="Too many bins") as per_image:
        foreground_mask(narrow[1])
    with pytest.raises(ValueError) as batched:
        foreground_masks(narrow)
    assert str(batched.value) == str(per_image.value)
    x[3, 0, 0] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        foreground_mask(x[3])
    with pytest.raises(ValueError, match="not finite"):
        foreground_masks(x)


def test_foreground_masks_given_masks_empty_batch_and_bad_shapes() -> None:
    x = np.random.default_rng(0).uniform(size=(2, 8, 8)).astype(np.float32)
    given_masks = np.zeros((2, 8, 8), dtype=np.uint8)
    given_masks[0, 2:5, 2:5] = 1
    out = foreground_masks(x, given_masks)
    assert out.dtype == bool and out.sum() == 9
    with pytest.raises(ValueError, match="do not match"):
        foreground_masks(x, given_masks[:1])
    empty = foreground_masks(np.zeros((0, 8, 8), dtype=np.float32))
    assert empty.shape == (0, 8, 8) and empty.dtype == bool
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        foreground_masks(x[0])


def test_bin_counts_and_otsu_match_numpy_and_skimage_on_bin_edges() -> None:
    """Values on, just below and just above np.histogram's edges, where its index rounding
    needs the one-bin corrections; ranges that are not powers of two so the edges round."""
    rows = []
    rng = np.random.default_rng(11)
    for lo, hi in [(0.1, 0.7), (0.0, 1.0), (1 / 3, 2 / 3), (1e3, 1e3 + 0.37), (-2.5, 7.1)]:
        edges = np.linspace(lo, hi, 257)
        row = np.concatenate(
            [edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)]
        ).clip(lo, hi)
        row = np.concatenate([row, rng.uniform(lo, hi, 1024 - len(row))])
        rows.append(rng.permutation(row))
    flat = np.stack(rows)
    mn, mx = flat.min(axis=1), flat.max(axis=1)
    counts = _bin_counts(flat, mn, mx, _bin_edges(mn, mx))
    for row, got in zip(flat, counts, strict=True):
        np.testing.assert_array_equal(got, np.histogram(row, 256)[0])
    np.testing.assert_array_equal(_otsu(flat, mn, mx), [threshold_otsu(r) for r in flat])


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 20), st.integers(1, 20)),
        elements=st.sampled_from([0.0, 0.0, 0.05, 0.3, 0.31, 0.5, 0.9, 1.0])
        | st.floats(0.0, 1.0, allow_subnormal=False),
    )
)
def test_foreground_masks_equal_per_image_on_random_images(x: np.ndarray) -> None:
    try:
        expected = _per_image(x)
    except ValueError as exc:  # e.g. two adjacent floats only: np.histogram refuses them
        with pytest.raises(ValueError) as batched:
            foreground_masks(x)
        assert str(batched.value) == str(exc)
        return
    np.testing.assert_array_equal(foreground_masks(x), expected)


def test_slice_of_labels_matches_every_pixels_slice() -> None:
    """The label-to-slice map read off ndimage.label's numbering equals the one that each
    labelled pixel gives, on a stack with empty slices, full slices and many specks."""
    from scipy import ndimage

    from medcrypt.processing.protection._foreground import _CROSS_3D, _slice_of_labels

    rng = np.random.default_rng(2)
    fg = rng.uniform(size=(6, 30, 30)) > 0.6
    fg[1] = False
    fg[4] = True
    labels, n = ndimage.label(fg, structure=_CROSS_3D, output=np.intp)
    expected = np.zeros(n + 1, dtype=np.intp)
    expected[labels] = np.arange(len(fg))[:, None, None]
    got = _slice_of_labels(labels, fg, n)
    assert got.shape == (n + 1,)
    np.testing.assert_array_equal(got[1:], expected[1:])  # label 0, the background: no slice
