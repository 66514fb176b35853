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

import math

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

    The computed masks equal :func:`foreground_mask` of each image bit for bit; the whole
    batch is computed at once (a few slices at a time): per-image percentiles, Otsu's
    threshold as skimage computes it, and labelling, hole filling and dilation of the stack
    with in-plane neighbourhoods only, so that no two slices ever touch. Images that the
    vectorised path does not cover (non-finite values, or a value range too narrow for
    256 histogram bins) go through :func:`foreground_mask` one by one, so that they give
    its result or its error.

    Raises:
        ValueError: ``masks`` of another shape than ``images``; images not (B, H, W).
    """
    arr = np.asarray(images)
    if masks is not None:
        m = np.asarray(masks)
        if m.shape != arr.shape:
            raise ValueError(f"masks shaped {m.shape} do not match images shaped {arr.shape}")
        return m.astype(bool)
    if arr.ndim and not arr.shape[0]:
        return arr.astype(bool)
    if arr.ndim != 3:
        raise ValueError(f"expected a batch of 2D images (B, H, W), got shape {arr.shape}")
    step = max(1, _CHUNK_PIXELS // max(1, arr.shape[1] * arr.shape[2]))
    return np.concatenate([_masks(arr[i : i + step]) for i in range(0, len(arr), step)])


#: Pixels per vectorised chunk (16 slices of 256x256): its float64 temporaries stay near 8 MiB.
_CHUNK_PIXELS = 1 << 20
_NBINS = 256  # skimage's threshold_otsu default
_CROSS = ndimage.generate_binary_structure(2, 1)  # ndimage's default 2D connectivity
#: The same connectivity for a (B, H, W) stack: nothing off the middle plane, so ndimage.label
#: (which wants a 3x3x3 structure) never joins pixels of neighbouring slices.
_CROSS_3D = np.stack([np.zeros_like(_CROSS), _CROSS, np.zeros_like(_CROSS)])


def _masks(images: np.ndarray) -> np.ndarray:
    """:func:`foreground_mask` of every slice of a (B, H, W) chunk, computed at once."""
    a = np.asarray(images, dtype=np.float64)
    b, h, w = a.shape
    flat = a.reshape(b, h * w)
    mn, mx = flat.min(axis=1), flat.max(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        exotic = ~np.isfinite(mx - mn) | _too_narrow_for_bins(mn, mx)
    if exotic.any():  # rare: the reference, one by one, for those; the rest vectorised
        out = np.empty(a.shape, dtype=bool)
        out[exotic] = [foreground_mask(x) for x in a[exotic]]
        if not exotic.all():
            out[~exotic] = _masks(a[~exotic])
        return out
    lo, hi = np.percentile(flat, [1.0, 99.0], axis=1)
    hi = np.where(hi > lo, hi, mx)
    t = lo + _RANGE_FRACTION * (hi - lo)
    varied = mn < mx  # threshold_otsu is only asked about these
    if varied.any():
        t[varied] = np.minimum(t[varied], _otsu(flat[varied], mn[varied], mx[varied]))
    t = np.maximum(t, lo)
    t[~(hi > lo)] = np.inf  # flat between the percentiles and at the top: nothing to protect
    fg = a > t[:, None, None]
    fg = _without_specks(fg, min_size=max(4, int(0.001 * h * w)))
    fg = _fill_holes(fg)
    fg = _dilate(fg, _dilation_radius((h, w)))
    return fg & (a > mn[:, None, None])


def _too_narrow_for_bins(mn: np.ndarray, mx: np.ndarray) -> np.ndarray:
    """Rows whose [mn, mx] np.histogram splits differently (a zero step: its denormal branch)
    or refuses (edges that do not increase: 'Too many bins for data range')."""
    step = (mx - mn) / _NBINS
    edges = _bin_edges(mn, mx)
    varied = mn < mx
    return varied & ((step == 0) | (np.diff(edges, axis=1) <= 0).any(axis=1))


def _bin_edges(mn: np.ndarray, mx: np.ndarray) -> np.ndarray:
    """np.histogram's edges for 256 bins over [mn, mx], per row: np.linspace's arithmetic."""
    edges = np.arange(_NBINS + 1, dtype=np.float64) * ((mx - mn) / _NBINS)[:, None]
    edges += mn[:, None]
    edges[:, -1] = mx
    return edges


def _otsu(flat: np.ndarray, mn: np.ndarray, mx: np.ndarray) -> np.ndarray:
    """skimage.filters.threshold_otsu of each row of a (B, N) float64 array whose min
    ``mn`` is below its max ``mx``, to the bit: the same histogram and the same arithmetic.

    skimage histograms with ``np.histogram(image, 256)`` over the image's own range and takes
    the bin centre that maximises the between-class variance, from float32 counts.
    """
    b = len(flat)
    edges = _bin_edges(mn, mx)
    counts = _bin_counts(flat, mn, mx, edges).astype(np.float32)  # as skimage's counts
    centers = (edges[:, :-1] + edges[:, 1:]) / 2.0
    # threshold_otsu, row-wise (cumulative sums run along each row in the same order)
    weight1 = np.cumsum(counts, axis=1)
    weight2 = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    mean1 = np.cumsum(counts * centers, axis=1) / weight1
    mean2 = (np.cumsum((counts * centers)[:, ::-1], axis=1) / weight2[:, ::-1])[:, ::-1]
    variance12 = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    return centers[np.arange(b), np.argmax(variance12, axis=1)]


def _bin_counts(flat: np.ndarray, mn: np.ndarray, mx: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(B, 256) counts of ``np.histogram(row, 256)`` for each row of ``flat`` (min ``mn``,
    max ``mx``, bin edges ``edges``), with np.histogram's own bin rule: the scaled position,
    the right edge into the last bin, then one bin down or up where rounding put a value on
    the wrong side of an edge (down first, then up from the corrected bin; the last bin also
    holds its right edge)."""
    b = len(flat)
    f = flat - mn[:, None]
    f /= (mx - mn)[:, None]
    f *= _NBINS
    idx = f.astype(np.intp)
    del f
    np.minimum(idx, _NBINS - 1, out=idx)
    idx += (np.arange(b) * _NBINS)[:, None]  # row r's bins are r * 256 .. r * 256 + 255
    idx = idx.ravel()
    values = flat.ravel()
    lower = edges[:, :-1].ravel()
    upper = edges[:, 1:].copy()
    upper[:, -1] = np.inf  # never step up out of the last bin
    idx[np.flatnonzero(values < lower.take(idx))] -= 1  # rare: short index lists
    idx[np.flatnonzero(values >= upper.ravel().take(idx))] += 1
    return np.bincount(idx, minlength=b * _NBINS).reshape(b, _NBINS)


def _without_specks(fg: np.ndarray, min_size: int) -> np.ndarray:
    """Components under ``min_size`` pixels removed, in slices with more than one component."""
    labels, n = ndimage.label(fg, structure=_CROSS_3D, output=np.intp)
    if n <= 1:
        return fg
    sizes = np.bincount(labels.ravel())
    slice_of = _slice_of_labels(labels, fg, n)
    components = np.bincount(slice_of[1:], minlength=len(fg))
    keep = (sizes >= min_size) | (components[slice_of] <= 1)
    keep[0] = False
    return keep.take(labels)


def _slice_of_labels(labels: np.ndarray, fg: np.ndarray, n: int) -> np.ndarray:
    """The slice that each label 1..n of a stack labelled in-plane lies in (entry 0: unused).

    ndimage.label numbers components in the order it meets them, scanning the stack slice by
    slice, so each slice's labels form one run following the previous slice's. That is
    checked (cheaply: each slice's lowest label lies above every earlier slice's highest)
    before it is used; otherwise every pixel tells its label's slice.
    """
    rows, inside = labels.reshape(len(labels), -1), fg.reshape(len(fg), -1)
    top = rows.max(axis=1)  # 0 for an empty slice
    bottom = rows.min(axis=1, initial=n + 1, where=inside)
    below = np.concatenate([[0], np.maximum.accumulate(top)[:-1]])
    if np.all((bottom > below) | (top == 0)):
        counts = np.where(top > 0, top - bottom + 1, 0)
        return np.concatenate([[0], np.repeat(np.arange(len(labels)), counts)])
    slice_of = np.zeros(n + 1, dtype=np.intp)  # pragma: no cover - ndimage's order changed
    slice_of[labels] = np.arange(len(labels))[:, None, None]  # pragma: no cover
    return slice_of  # pragma: no cover


def _fill_holes(fg: np.ndarray) -> np.ndarray:
    """ndimage.binary_fill_holes of each slice: background that cannot reach the slice's
    border through 4-connected background is filled.

    binary_fill_holes floods the background from outside the image (border value 1) with the
    cross; here the background's 4-connected components are labelled (in-plane only) and
    those with a pixel on the slice's edge are the ones that flood reaches. Labelling once
    is about 7x faster than ndimage's iterated flood on the stack. (That flood, given the
    in-plane ``_CROSS_3D``, would need no padding of the batch axis either: a structure with
    nothing off the middle plane never looks past the first or last slice, so the border
    value there seeds nothing; checked equal when this was written.)
    """
    bg, _ = ndimage.label(~fg, structure=_CROSS_3D, output=np.intp)
    outside = np.zeros(int(bg.max()) + 1, dtype=bool)
    for edge in (bg[:, 0, :], bg[:, -1, :], bg[:, :, 0], bg[:, :, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the foreground itself
    return ~outside.take(bg)


def _dilate(fg: np.ndarray, r: int) -> np.ndarray:
    """ndimage.binary_dilation of each slice by the disc ``y^2 + x^2 <= r^2`` (border 0).

    The disc is the union of horizontal runs, half-width ``floor(sqrt(r^2 - dy^2))`` at row
    offset ``dy``: grow along W once per half-width, then OR the row-shifted copies. The
    union of shifted copies is the dilation, exactly; nothing wraps or crosses slices.
    """
    if r <= 0:
        return fg
    wide = [fg]  # wide[k]: fg grown by k pixels along W
    for k in range(1, r + 1):
        g = wide[-1].copy()
        g[:, :, k:] |= fg[:, :, :-k]
        g[:, :, :-k] |= fg[:, :, k:]
        wide.append(g)
    out = wide[r].copy()
    for dy in range(1, r + 1):
        g = wide[math.isqrt(r * r - dy * dy)]
        out[:, dy:, :] |= g[:, :-dy, :]
        out[:, :-dy, :] |= g[:, dy:, :]
    return out


def _norms(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (d.ndim - 1)))


def project(
    delta: torch.Tensor,
    eps: float,
    norm: str,
    mask: torch.Tensor | None = None,
    cap: float | None = None,
) -> torch.Tensor:
    """``delta`` restricted to ``mask`` (if given) and projected onto the eps-ball of ``norm``.

    With a per-pixel ``cap`` the result also lies in the box [-cap, cap]: under Linf the
    clamp is to the smaller of the two; under L2 every entry is clamped to the cap first and
    the row then scaled onto the ball (scaling only shrinks entries, so both hold).
    """
    d = delta if mask is None else delta * mask
    if norm == "linf":
        bound = eps if cap is None else min(eps, cap)
        return d.clamp(-bound, bound)
    if norm != "l2":
        raise ValueError(f"expected norm 'l2' or 'linf', got {norm!r}")
    if cap is not None:
        d = d.clamp(-cap, cap)
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
    cap: float | None = None,
) -> torch.Tensor:
    """``images`` brought within eps of ``originals`` (``norm``), off-mask pixels restored.

    The result is clamped to [0, 1] and verified in float64 (rows left over eps by float32
    rounding are shrunk again), so the budget holds exactly for the returned values; where
    ``mask`` is False the result equals ``originals`` bit for bit. With a per-pixel ``cap``
    no pixel of the result moves by more than it either (also verified in float64).
    """
    keep = None if mask is None else mask.to(torch.bool).expand_as(originals)
    bound = None if cap is None else (cap if norm == "l2" else min(cap, eps))
    if norm == "linf" or bound is not None:
        # clamp in float64 (a float32 eps can lie above eps), round once, then step the
        # pixels that rounding pushed over one ulp back toward the original
        o64 = originals.double()
        change = project(images.double() - o64, eps, norm, mask, cap)
        out = (o64 + change).clamp(0.0, 1.0).to(originals.dtype)
    else:
        out = (originals + project(images - originals, eps, norm, mask)).clamp(0.0, 1.0)
    for attempt in range(60):
        if keep is not None:
            out = torch.where(keep, out, originals)
        if bound is not None:
            bad = (out.double() - originals.double()).abs() > bound
            out = torch.where(bad, torch.nextafter(out, originals), out)
        dist = _distance(out, originals, norm)
        over = dist > eps
        capped = bound is None or bool((_distance(out, originals, "linf") <= bound).all())
        if not bool(over.any()) and capped:
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
