"""Foreground (anatomy) masks and the budget restricted to them, in L2 or L-infinity.

The mask comes from the image itself: a robust intensity threshold (the lower of Otsu's
threshold and 10% of the 1st-99th percentile range above the 1st percentile, so dark tissue
next to air still counts), specks removed, holes filled (ventricles and dark lesions inside
the head belong to it) and a small dilation (the edge of the anatomy is kept inside). A
case's brain mask, where it has one, can be given instead.

The budget helpers keep background pixels *bit-identical* to the original: every
perturbation is multiplied by the mask, and the final image takes the original's value
wherever the mask is off, so a zero change survives any float or quantisation round trip.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu

__all__ = ["apply_budget", "foreground_mask", "foreground_masks", "project"]

_RANGE_FRACTION = 0.10


def _dilation_radius(shape: tuple[int, ...]) -> int:
    return max(1, round(min(shape) / 128))


def foreground_mask(image: np.ndarray, *, dilation: int | None = None) -> np.ndarray:
    """Boolean (H, W) mask of the anatomy in one [0, 1] slice.

    Args:
        image: (H, W) float image.
        dilation: pixels the mask is grown by (default ``max(1, round(min(H, W) / 128))``:
            2 at 256x256, 1 at 32-191 pixels).

    Pixels at the image's floor (its minimum: exactly black in a zero-background slice)
    are never in the mask, even inside the filled and dilated outline. They carry no
    anatomy, half of any perturbation there would be clipped away, and changing them
    would let a reader tell a released slice from its original by its share of black
    pixels (the reader study's blinding check measures exactly that).

    Returns:
        bool (H, W); all False for a constant image (nothing to protect).
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2D image (H, W), got shape {a.shape}")
    lo, hi = np.percentile(a, [1.0, 99.0])
    if not hi > lo:
        hi = float(a.max())
        if not hi > lo:
            return np.zeros(a.shape, dtype=bool)
    t = lo + _RANGE_FRACTION * (hi - lo)
    if a.min() < a.max():
        t = min(t, float(threshold_otsu(a)))
    fg = a > max(t, lo)
    # specks: connected components smaller than 0.1% of the image (at least 4 pixels)
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= max(4, int(0.001 * a.size))
        keep[0] = False
        fg = keep[labels]
    fg = ndimage.binary_fill_holes(fg)
    r = _dilation_radius(a.shape) if dilation is None else int(dilation)
    if r > 0:
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        fg = ndimage.binary_dilation(fg, structure=(yy**2 + xx**2) <= r * r)
    return np.asarray(fg & (a > a.min()), dtype=bool)


def foreground_masks(images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """(B, H, W) bool masks for a batch: the given ``masks`` (checked) or one per image.

    Raises:
        ValueError: ``masks`` of another shape than ``images``.
    """
    arr = np.asarray(images)
    if masks is not None:
        m = np.asarray(masks)
        if m.shape != arr.shape:
            raise ValueError(f"masks shaped {m.shape} do not match images shaped {arr.shape}")
        return m.astype(bool)
    return np.stack([foreground_mask(x) for x in arr]) if arr.shape[0] else arr.astype(bool)


def _norms(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (d.ndim - 1)))


def project(
    delta: torch.Tensor, eps: float, norm: str, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``delta`` restricted to ``mask`` (if given) and projected onto the eps-ball of ``norm``."""
    d = delta if mask is None else delta * mask
    if norm == "linf":
        return d.clamp(-eps, eps)
    if norm != "l2":
        raise ValueError(f"expected norm 'l2' or 'linf', got {norm!r}")
    n = _norms(d)
    return d * torch.where(n > eps, eps / n.clamp_min(1e-12), torch.ones_like(n))


def _distance(out: torch.Tensor, originals: torch.Tensor, norm: str) -> torch.Tensor:
    d = (out.double() - originals.double()).flatten(1)
    return d.abs().amax(dim=1) if norm == "linf" else d.norm(dim=1)


def apply_budget(
    originals: torch.Tensor,
    images: torch.Tensor,
    eps: float,
    *,
    norm: str = "l2",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``images`` brought within eps of ``originals`` (``norm``), off-mask pixels restored.

    The result is clamped to [0, 1] and verified in float64 (rows left over eps by float32
    rounding are shrunk again), so the budget holds exactly for the returned values; where
    ``mask`` is False the result equals ``originals`` bit for bit.
    """
    keep = None if mask is None else mask.to(torch.bool).expand_as(originals)
    if norm == "linf":
        # clamp in float64 (a float32 eps can lie above eps), round once, then step the
        # pixels that rounding pushed over one ulp back toward the original
        o64 = originals.double()
        change = project(images.double() - o64, eps, norm, mask)
        out = (o64 + change).clamp(0.0, 1.0).to(originals.dtype)
    else:
        out = (originals + project(images - originals, eps, norm, mask)).clamp(0.0, 1.0)
    for attempt in range(60):
        if keep is not None:
            out = torch.where(keep, out, originals)
        dist = _distance(out, originals, norm)
        over = dist > eps
        if not bool(over.any()):
            return out
        rows = over.view(-1, *([1] * (out.ndim - 1)))
        if norm == "linf":
            # float32 rounding of original + change: step the offending pixels one ulp back
            bad = (out.double() - originals.double()).abs() > eps
            out = torch.where(bad, torch.nextafter(out, originals), out)
        elif attempt < 10:
            factor = torch.where(over, (eps / dist) * (1 - 1e-6), torch.ones_like(dist))
            factor = factor.to(out.dtype).view(-1, *([1] * (out.ndim - 1)))
            out = torch.where(rows, (originals + (out - originals) * factor).clamp(0, 1), out)
        else:  # shrinking no longer changes float32 values: one ulp back on every pixel
            out = torch.where(rows, torch.nextafter(out, originals), out)
    raise RuntimeError("could not bring the perturbation within the budget")  # unreachable
