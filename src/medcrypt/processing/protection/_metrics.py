"""Per-image perceptual and attack metrics: L2, L-infinity, PSNR, SSIM, targeted success."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# scikit-image's metrics are imported where used: ``skimage.metrics`` pulls in scipy.stats,
# a fifth of the import time of every Ray worker of the archive job, none of which (bar
# the write stage) calls these functions

__all__ = ["image_metrics", "l2", "linf", "psnr", "ssim", "targeted_success_rate"]


def _masks(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 2:
        m = m[None]
    if m.shape != shape:
        raise ValueError(f"mask shaped {m.shape} does not match images shaped {shape}")
    return m


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    if x.ndim == 2:
        x, y = x[None], y[None]
    if x.ndim != 3:
        raise ValueError(f"expected (H, W) or (B, H, W) images, got {x.shape}")
    return x, y


def l2(original: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-image L2 distance, (B,) float64 (images in [0, 1])."""
    x, y = _pair(original, other)
    return np.sqrt(((x - y) ** 2).reshape(x.shape[0], -1).sum(axis=1))


def linf(original: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-image L-infinity distance, (B,) float64."""
    x, y = _pair(original, other)
    return np.abs(x - y).reshape(x.shape[0], -1).max(axis=1)


def psnr(original: np.ndarray, other: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image PSNR in dB with data range 1 (scikit-image); ``inf`` for identical images.

    With ``mask`` ((H, W) or (B, H, W) bool) the mean squared error is taken over the masked
    pixels only (the foreground PSNR); ``nan`` for an empty mask.
    """
    from skimage.metrics import peak_signal_noise_ratio

    x, y = _pair(original, other)
    m = _masks(mask, x.shape)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        xi, yi = (x[i], y[i]) if m is None else (x[i][m[i]], y[i][m[i]])
        if xi.size == 0:
            out[i] = np.nan
        elif np.array_equal(xi, yi):
            out[i] = np.inf
        else:
            out[i] = peak_signal_noise_ratio(xi, yi, data_range=1.0)
    return out


def ssim(original: np.ndarray, other: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image SSIM with data range 1 (scikit-image ``structural_similarity``).

    With ``mask`` the SSIM map (7x7 windows over the whole image) is averaged over the
    masked pixels only (the foreground SSIM); ``nan`` for an empty mask.
    """
    from skimage.metrics import structural_similarity

    x, y = _pair(original, other)
    m = _masks(mask, x.shape)
    if m is None:
        return np.array(
            [structural_similarity(x[i], y[i], data_range=1.0) for i in range(x.shape[0])]
        )
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        if not m[i].any():
            out[i] = np.nan
            continue
        _, smap = structural_similarity(x[i], y[i], data_range=1.0, full=True)
        out[i] = float(smap[m[i]].mean())
    return out


def targeted_success_rate(
    predictions: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray
) -> float:
    """Fraction of predictions equal to their targets (nan for an empty input)."""
    p = np.asarray(predictions).reshape(-1)
    t = np.asarray(targets).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"{p.size} predictions but {t.size} targets")
    return float((p == t).mean()) if p.size else float("nan")


def image_metrics(
    original: np.ndarray, other: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-image metrics: ``{"l2", "linf", "psnr", "ssim"}`` -> (B,) arrays.

    With a foreground ``mask`` also ``"psnr_foreground"``, ``"ssim_foreground"`` (over the
    mask) and ``"foreground_fraction"`` (the mask's share of the pixels).
    """
    out = {
        "l2": l2(original, other),
        "linf": linf(original, other),
        "psnr": psnr(original, other),
        "ssim": ssim(original, other),
    }
    if mask is not None:
        x, _ = _pair(original, other)
        m = _masks(mask, x.shape)
        assert m is not None
        out["psnr_foreground"] = psnr(original, other, m)
        out["ssim_foreground"] = ssim(original, other, m)
        out["foreground_fraction"] = m.reshape(m.shape[0], -1).mean(axis=1)
    return out
