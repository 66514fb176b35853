"""The batched torch record metrics equal the per-image scikit-image ones.

Stated tolerance: 1e-9 absolute on L2, L-infinity, PSNR (dB) and SSIM, whole slice and
foreground (both sides compute in float64; only the summation order differs). Real slices
come from figshare-btd (``../shared/data/figshare-btd``, read by path); those tests skip where
the shared data is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from medcrypt.medical import make_phantom_slices
from medcrypt.processing import foreground_masks, l2, linf, psnr, ssim
from medcrypt.processing.protection._metrics_torch import batch_metrics, psnr_t, ssim_t

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-9
ROOT = Path(__file__).resolve().parents[3]
FIGSHARE = ROOT.parent / "shared" / "data" / "figshare-btd" / "train"


def _figshare(size: int, n: int = 12) -> np.ndarray:
    paths = sorted(FIGSHARE.glob("*/*.png"))
    if not paths:
        pytest.skip(f"figshare-btd not found under {FIGSHARE}")
    out = []
    for path in paths[:: max(1, len(paths) // n)][:n]:
        with Image.open(path) as im:
            grey = im.convert("L")
            if grey.size != (size, size):
                grey = grey.resize((size, size), Image.Resampling.BOX)
            out.append(np.asarray(grey, dtype=np.float32) / 255.0)
    return np.stack(out)


def _released(x: np.ndarray, fg: np.ndarray, seed: int) -> np.ndarray:
    """A stand-in release: noise on the foreground at ~35 dB, 16-bit quantised, one image
    left identical (PSNR inf) so that edge case is covered too."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(x + rng.normal(0, 0.018, x.shape) * fg, 0, 1)
    q = (np.round(noisy * 65535) / 65535).astype(np.float32)
    q[0] = x[0]
    return q


def _assert_equal_to_skimage(x: np.ndarray, rel: np.ndarray, fg: np.ndarray) -> None:
    got = batch_metrics(torch.from_numpy(x), torch.from_numpy(rel), torch.from_numpy(fg))
    want = {
        "l2": l2(x, rel),
        "linf": linf(x, rel),
        "psnr": psnr(x, rel),
        "ssim": ssim(x, rel),
        "psnr_foreground": psnr(x, rel, fg),
        "ssim_foreground": ssim(x, rel, fg),
    }
    assert set(got) == set(want)
    for name, ref in want.items():
        val = got[name].numpy()
        assert val.dtype == np.float64 and val.shape == (len(x),)
        np.testing.assert_allclose(val, ref, rtol=0, atol=TOL, err_msg=name)
    assert np.isinf(got["psnr"][0].item()) and got["ssim"][0].item() == pytest.approx(1.0, abs=TOL)
    assert np.isfinite(got["psnr"][1:].numpy()).all()


@pytest.mark.parametrize("size", [64, 256])
def test_equal_to_skimage_on_real_mri(size: int) -> None:
    x = _figshare(size)
    fg = foreground_masks(x)
    _assert_equal_to_skimage(x, _released(x, fg, size), fg)


def test_equal_to_skimage_on_phantoms() -> None:
    x, _ = make_phantom_slices(2, size=64, seed=3)
    x = x.astype(np.float32)
    fg = foreground_masks(x)
    _assert_equal_to_skimage(x, _released(x, fg, 1), fg)


def test_empty_mask_gives_nan_and_odd_shapes_match_skimage() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, 19, 33))  # odd, non-square: border handling on both axes
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    want = [structural_similarity(a, b, data_range=1.0) for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(ssim_t(torch.from_numpy(x), torch.from_numpy(y)), want, atol=TOL)
    empty = torch.zeros(x.shape, dtype=torch.bool)
    assert torch.isnan(psnr_t(torch.from_numpy(x), torch.from_numpy(y), empty)).all()
    assert torch.isnan(ssim_t(torch.from_numpy(x), torch.from_numpy(y), empty)).all()
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_t(torch.zeros(2, 8, 8), torch.zeros(2, 8, 9))
    with pytest.raises(ValueError, match="mask shaped"):
        ssim_t(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), torch.zeros(1, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_equal_on_cuda() -> None:
    x, _ = make_phantom_slices(2, size=64, seed=5)
    x = x.astype(np.float32)
    fg = foreground_masks(x)
    rel = _released(x, fg, 2)
    dev = torch.device("cuda")
    got = batch_metrics(
        torch.from_numpy(x).to(dev), torch.from_numpy(rel).to(dev), torch.from_numpy(fg).to(dev)
    )
    np.testing.assert_allclose(got["ssim_foreground"].cpu().numpy(), ssim(x, rel, fg), atol=TOL)
    np.testing.assert_allclose(got["psnr"].cpu().numpy(), psnr(x, rel), atol=TOL)
