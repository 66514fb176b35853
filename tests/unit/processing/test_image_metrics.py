from __future__ import annotations

import numpy as np
import pytest

from medcrypt.processing import image_metrics, l2, linf, psnr, ssim, targeted_success_rate

pytestmark = pytest.mark.usefixtures("one_thread")


def test_known_values() -> None:
    a = np.zeros((2, 10, 10))
    b = a.copy()
    b[0, 0, 0] = 0.5
    b[1] += 0.1
    np.testing.assert_allclose(l2(a, b), [0.5, 1.0])
    np.testing.assert_allclose(linf(a, b), [0.5, 0.1])
    # MSE 0.01 -> 20 dB
    assert psnr(a[1], b[1])[0] == pytest.approx(20.0)
    assert psnr(a, a)[0] == np.inf


def test_ssim_is_one_for_identical_and_lower_for_noise() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((1, 32, 32))
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert ssim(img, img)[0] == pytest.approx(1.0)
    assert ssim(img, noisy)[0] < 0.9
    m = image_metrics(img, noisy)
    assert set(m) == {"l2", "linf", "psnr", "ssim"}
    assert all(v.shape == (1,) for v in m.values())


def test_targeted_success_rate() -> None:
    assert targeted_success_rate([1, 2, 3, 0], [1, 2, 0, 0]) == 0.75
    with pytest.raises(ValueError, match="3 predictions but 2 targets"):
        targeted_success_rate([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="shapes differ"):
        l2(np.zeros((2, 3)), np.zeros((3, 3)))
