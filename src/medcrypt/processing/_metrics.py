"""Per-image perceptual and attack metrics: L2, L-infinity, PSNR, SSIM, targeted success."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["image_metrics", "l2", "linf", "psnr", "ssim", "targeted_success_rate"]


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


def psnr(original: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB with data range 1 (scikit-image); ``inf`` for identical images."""
    x, y = _pair(original, other)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        if np.array_equal(x[i], y[i]):
            out[i] = np.inf
        else:
            out[i] = peak_signal_noise_ratio(x[i], y[i], data_range=1.0)
    return out


def ssim(original: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-image SSIM with data range 1 (scikit-image ``structural_similarity``)."""
    x, y = _pair(original, other)
    return np.array([structural_similarity(x[i], y[i], data_range=1.0) for i in range(x.shape[0])])


def targeted_success_rate(
    predictions: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray
) -> float:
    """Fraction of predictions equal to their targets (nan for an empty input)."""
    p = np.asarray(predictions).reshape(-1)
    t = np.asarray(targets).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"{p.size} predictions but {t.size} targets")
    return float((p == t).mean()) if p.size else float("nan")


def image_metrics(original: np.ndarray, other: np.ndarray) -> dict[str, np.ndarray]:
    """All four per-image metrics: ``{"l2", "linf", "psnr", "ssim"}`` -> (B,) arrays."""
    return {
        "l2": l2(original, other),
        "linf": linf(original, other),
        "psnr": psnr(original, other),
        "ssim": ssim(original, other),
    }
