"""Quantisation of released images to the output dtype with the budget (L2 or L-infinity)
kept exactly.

A pixel the protection left unchanged rounds to the same code as the original does, so the
background of a foreground-confined release is bit-identical to the quantised original.
"""

from __future__ import annotations

import numpy as np

from medcrypt.errors import ConfigError

__all__ = ["dequantise", "quantise"]


def _l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a.astype(np.float64) - b.astype(np.float64)
    return np.sqrt((d**2).reshape(d.shape[0], -1).sum(axis=1))


def dequantise(q: np.ndarray, *, levels: int = 65535) -> np.ndarray:
    """Integer codes -> float32 in [0, 1]."""
    return (q.astype(np.float64) / levels).astype(np.float32)


def _band(q: np.ndarray, o: np.ndarray, eps: float, levels: int, what: str) -> np.ndarray:
    """Move every code ``q`` over ``eps`` from ``o`` back inside the band (toward ``o``)."""
    lo = np.maximum(np.ceil((o - eps) * levels), 0.0)
    hi = np.minimum(np.floor((o + eps) * levels), float(levels))
    q = np.clip(q, lo, hi)
    for _ in range(3):  # float64 edge cases: step one code toward the original
        d = q / levels - o
        q = np.where(d > eps, q - 1, np.where(d < -eps, q + 1, q))
    if (np.abs(q / levels - o) > eps).any():
        worst = float(np.abs(np.rint(o * levels) / levels - o).max())
        raise ConfigError(
            f"{what}={eps} is below the quantisation error of the original image itself "
            f"({worst:.3g} at {levels} levels)",
            field=what.split(" ")[0],
        )
    return q


def _quantise_linf(p: np.ndarray, o: np.ndarray, eps: float, levels: int) -> np.ndarray:
    """Round to codes, then move every code over ``eps`` from ``o`` back inside the band."""
    return _band(np.rint(np.clip(p, 0.0, 1.0) * levels), o, eps, levels, "eps (linf)")


def quantise(
    protected01: np.ndarray,
    original01: np.ndarray,
    *,
    eps: float,
    levels: int = 65535,
    norm: str = "l2",
    linf_cap: float | None = None,
) -> np.ndarray:
    """Round ``protected01`` to ``levels + 1`` integer codes, keeping the budget.

    ``norm="l2"`` guarantees ``||q / levels - original01||_2 <= eps`` per image (computed in
    float64): if rounding pushes an image over, its perturbation is shrunk (largest factor
    found by bisection) and re-rounded. ``norm="linf"`` guarantees every pixel within eps:
    a code rounded over is moved to the nearest code inside the band.

    Args:
        protected01: (H, W) or (B, H, W) in [0, 1] (clipped before rounding).
        original01: the originals, same shape.
        eps: the L2 budget.
        levels: the largest code (65535 for uint16, 255 for uint8).
        norm: ``l2`` or ``linf``, the budget's norm.
        linf_cap: per-pixel cap held beside an L2 budget (``PGDSettings.linf_cap``): rounding
            can move a pixel half a level past it, so every code over it is moved back to
            the nearest code inside (toward the original, which only lowers the L2 norm).

    Returns:
        uint16 array (uint8 when ``levels <= 255``), same shape.

    Raises:
        ConfigError: ``eps`` is smaller than the rounding error of the original itself, so no
            quantised image can satisfy it.
    """
    p = np.asarray(protected01, dtype=np.float64)
    o = np.asarray(original01, dtype=np.float64)
    if p.shape != o.shape:
        raise ValueError(f"protected shape {p.shape} differs from original shape {o.shape}")
    single = p.ndim == 2
    if single:
        p, o = p[None], o[None]
    dtype = np.uint8 if levels <= 255 else np.uint16
    if norm == "linf":
        bound = eps if linf_cap is None else min(eps, linf_cap)
        out_linf = _quantise_linf(p, o, bound, levels).astype(dtype)
        return out_linf[0] if single else out_linf
    if norm != "l2":
        raise ValueError(f"expected norm 'l2' or 'linf', got {norm!r}")

    def rnd(x: np.ndarray, orig: np.ndarray) -> np.ndarray:
        q = np.rint(np.clip(x, 0.0, 1.0) * levels)
        if linf_cap is None:
            return q
        return _band(q, orig, linf_cap, levels, "linf_cap")

    q = rnd(p, o)
    over = np.flatnonzero(_l2(q / levels, o) > eps)
    for i in over:
        floor = rnd(o[i], o[i])
        if _l2(floor[None] / levels, o[i][None])[0] > eps:
            raise ConfigError(
                f"eps={eps} is below the quantisation error of the original image itself "
                f"({_l2(floor[None] / levels, o[i][None])[0]:.3g} at {levels} levels)",
                field="eps",
            )
        lo, hi = 0.0, 1.0  # lo always satisfies the budget
        best = floor
        for _ in range(40):
            mid = (lo + hi) / 2
            cand = rnd(o[i] + mid * (p[i] - o[i]), o[i])
            if _l2(cand[None] / levels, o[i][None])[0] <= eps:
                lo, best = mid, cand
            else:
                hi = mid
        q[i] = best
    out = q.astype(dtype)
    return out[0] if single else out
