from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medcrypt.errors import ConfigError
from medcrypt.processing import dequantise, l2, quantise

pytestmark = pytest.mark.usefixtures("one_thread")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    eps=st.floats(0.02, 3.0),
    levels=st.sampled_from([255, 4095, 65535]),
    side=st.integers(4, 48),
)
def test_budget_holds_after_quantisation(seed: int, eps: float, levels: int, side: int) -> None:
    rng = np.random.default_rng(seed)
    original = rng.random((3, side, side))
    if levels == 255:
        original = np.round(original * 255) / 255  # 8-bit sources sit on the grid
    d = rng.normal(size=original.shape)
    d *= eps / np.sqrt((d**2).reshape(3, -1).sum(axis=1))[:, None, None]  # exactly on the sphere
    protected = np.clip(original + d, 0, 1)
    q = quantise(protected, original, eps=eps, levels=levels)
    assert q.dtype == (np.uint8 if levels == 255 else np.uint16)
    assert (l2(original, q.astype(np.float64) / levels) <= eps).all()


def test_rounds_rather_than_truncates() -> None:
    p = np.array([[0.4 / 65535, 0.6 / 65535, 1.0, 0.0]], dtype=np.float64)
    q = quantise(p, p, eps=1.0)
    np.testing.assert_array_equal(q, [[0, 1, 65535, 0]])


def test_shrinks_when_rounding_would_exceed() -> None:
    # a perturbation exactly at the budget whose rounding goes outward on every pixel
    o = np.full((1, 10, 10), 1000.3 / 65535)
    p = np.full((1, 10, 10), 1005.45 / 65535)
    eps = float(l2(o, p)[0])
    q = quantise(p, o, eps=eps)
    assert float(l2(o, q / 65535)[0]) <= eps
    assert int(q.max()) in (1004, 1005)


def test_single_image_and_dequantise_round_trip() -> None:
    img = np.linspace(0, 1, 64).reshape(8, 8).astype(np.float32)
    q = quantise(img, img, eps=0.01)
    assert q.shape == (8, 8)
    assert np.abs(dequantise(q) - img).max() <= 0.5 / 65535 + 1e-7


def test_budget_below_rounding_error_of_original_is_refused() -> None:
    o = np.full((1, 32, 32), 0.5 / 255 + 1e-3)
    with pytest.raises(ConfigError, match="below the quantisation error"):
        quantise(o, o, eps=1e-4, levels=255)
