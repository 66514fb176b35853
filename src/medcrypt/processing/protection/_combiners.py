"""Combiners: the function T of paper Eq. 2, merging the per-target PGD outputs of one image.

Each combiner has per-class secret parameters (a flat tuple of floats, stored in the key):

============== ========= =====================================================================
combiner       targets   parameters
============== ========= =====================================================================
none           1         ``()`` (the basic method of Sec. 3.1)
concat         K >= 2    ``K-1`` increasing split fractions in (0, 1): vertical strips, left to
                         right, strip k taken from the output for target k (Horizontal Concat)
mixup          K >= 2    ``K`` positive weights summing to 1 (convex combination)
mixup_concat   4         ``(a1, a2, ratio)``: ``m1 = a1*x1 + (1-a1)*x2``,
                         ``m2 = a2*x3 + (1-a2)*x4``, left ``ratio`` of m1 next to the rest of m2
cutmix         2         ``(top, left, height, width)`` fractions: a box of the output for target
                         2 pasted into the output for target 1
============== ========= =====================================================================

After combining, the perturbation is projected back onto the eps-ball around the original
and clamped to [0, 1] (two strips each within eps can together exceed it), so the released
image always satisfies the budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from medcrypt.processing.protection._foreground import apply_budget
from medcrypt.processing.protection._pgd import enforce_budget

__all__ = [
    "COMBINERS",
    "combine",
    "default_target_count",
    "random_params",
    "validate_combiner",
]

#: Combiner names accepted by keys.
COMBINERS: tuple[str, ...] = ("none", "concat", "mixup", "mixup_concat", "cutmix")

_MIN_FRACTION = 0.05


def default_target_count(combiner: str) -> int:
    """Targets per class used when the caller does not say: 1, 2, 2, 4, 2."""
    return {"none": 1, "concat": 2, "mixup": 2, "mixup_concat": 4, "cutmix": 2}[combiner]


def validate_combiner(combiner: str, n_targets: int, params: Sequence[float]) -> None:
    """Raise ``ValueError`` (message says what was expected) if the parameters do not fit."""
    p = [float(v) for v in params]
    if combiner not in COMBINERS:
        raise ValueError(f"unknown combiner {combiner!r}; expected one of {COMBINERS}")
    if any(not np.isfinite(v) for v in p):
        raise ValueError(f"{combiner} parameters must be finite, got {p}")
    if combiner == "none":
        if n_targets != 1 or p:
            raise ValueError(f"'none' needs 1 target and no parameters, got {n_targets} and {p}")
    elif combiner == "concat":
        if n_targets < 2 or len(p) != n_targets - 1:
            raise ValueError(
                f"concat needs >= 2 targets and targets-1 split fractions, got {n_targets} "
                f"targets and {p}"
            )
        edges = [0.0, *p, 1.0]
        if any(b - a < _MIN_FRACTION for a, b in itertools.pairwise(edges)):
            raise ValueError(
                f"concat split fractions must increase within (0, 1) leaving strips of at least "
                f"{_MIN_FRACTION}, got {p}"
            )
    elif combiner == "mixup":
        if n_targets < 2 or len(p) != n_targets:
            raise ValueError(
                f"mixup needs >= 2 targets and one weight per target, got {n_targets} "
                f"targets and {p}"
            )
        if min(p) <= 0 or abs(sum(p) - 1.0) > 1e-6:
            raise ValueError(f"mixup weights must be positive and sum to 1, got {p}")
    elif combiner == "mixup_concat":
        if n_targets != 4 or len(p) != 3:
            raise ValueError(
                f"mixup_concat needs 4 targets and (a1, a2, ratio), got {n_targets} and {p}"
            )
        if not all(_MIN_FRACTION <= v <= 1 - _MIN_FRACTION for v in p):
            raise ValueError(
                f"mixup_concat parameters must lie in [{_MIN_FRACTION}, {1 - _MIN_FRACTION}], "
                f"got {p}"
            )
    elif combiner == "cutmix":
        if n_targets != 2 or len(p) != 4:
            raise ValueError(
                f"cutmix needs 2 targets and (top, left, height, width), got {n_targets} and {p}"
            )
        top, left, h, w = p
        if min(p) < 0 or h < _MIN_FRACTION or w < _MIN_FRACTION or top + h > 1 or left + w > 1:
            raise ValueError(f"cutmix box must lie inside the image with positive size, got {p}")


def random_params(combiner: str, n_targets: int, rng: np.random.Generator) -> tuple[float, ...]:
    """Draw secret parameters for one class (see the module table for their meaning)."""
    if combiner == "none":
        return ()
    if combiner == "concat":
        while True:
            cuts = (
                np.sort(rng.uniform(0.3, 0.7, n_targets - 1))
                if n_targets == 2
                else np.sort(rng.uniform(0.1, 0.9, n_targets - 1))
            )
            edges = np.concatenate([[0.0], cuts, [1.0]])
            if np.diff(edges).min() >= max(_MIN_FRACTION, 0.5 / n_targets):
                return tuple(round(float(c), 6) for c in cuts)
    if combiner == "mixup":
        if n_targets == 2:
            a = round(float(rng.uniform(0.3, 0.7)), 6)
            return (a, round(1.0 - a, 6))
        while True:
            w = rng.dirichlet(np.full(n_targets, 4.0))
            if w.min() >= 0.1 / n_targets:
                w = np.round(w, 6)
                w[-1] = round(1.0 - float(w[:-1].sum()), 6)
                return tuple(float(v) for v in w)
    if combiner == "mixup_concat":
        return tuple(round(float(v), 6) for v in rng.uniform(0.3, 0.7, 3))
    if combiner == "cutmix":
        size = rng.uniform(0.35, 0.65, 2)
        bh, bw = round(float(size[0]), 6), round(float(size[1]), 6)
        top = round(float(rng.uniform(0.0, 1.0 - bh)), 6)
        left = round(float(rng.uniform(0.0, 1.0 - bw)), 6)
        return (top, left, bh, bw)
    raise ValueError(f"unknown combiner {combiner!r}; expected one of {COMBINERS}")


def _cols(fractions: Sequence[float], width: int) -> list[int]:
    return [0, *[round(f * width) for f in fractions], width]


def combine(
    combiner: str,
    originals: torch.Tensor,
    adversarial: torch.Tensor,
    params: Sequence[float],
    *,
    eps: float,
    norm: str = "l2",
    mask: torch.Tensor | None = None,
    cap: float | None = None,
) -> torch.Tensor:
    """Merge per-target outputs of images that share one class (same targets and parameters).

    Args:
        originals: (B, C, H, W) in [0, 1].
        adversarial: (B, K, C, H, W), ``adversarial[:, k]`` the PGD output for target k.
        params: this class's combiner parameters.
        eps: budget; the result is projected onto the eps-ball around ``originals``.
        norm: ``l2`` (the paper's) or ``linf``.
        mask: (B, 1, H, W) foreground; off it the result equals ``originals`` exactly.
        cap: per-pixel cap (``PGDSettings.linf_cap``) held together with eps; None = none.

    Returns:
        (B, C, H, W) released images in [0, 1] with ``||out - originals|| <= eps`` per image.
    """
    k = adversarial.shape[1]
    validate_combiner(combiner, k, params)
    h, w = originals.shape[-2:]
    p = [float(v) for v in params]
    adv = adversarial
    if combiner == "none":
        out = adv[:, 0]
    elif combiner == "concat":
        cols = _cols(p, w)
        out = torch.cat([adv[:, i, ..., cols[i] : cols[i + 1]] for i in range(k)], dim=-1)
    elif combiner == "mixup":
        weights = torch.tensor(p, dtype=adv.dtype, device=adv.device).view(1, k, 1, 1, 1)
        out = (adv * weights).sum(dim=1)
    elif combiner == "mixup_concat":
        a1, a2, ratio = p
        m1 = a1 * adv[:, 0] + (1 - a1) * adv[:, 1]
        m2 = a2 * adv[:, 2] + (1 - a2) * adv[:, 3]
        c = round(ratio * w)
        out = torch.cat([m1[..., :c], m2[..., c:]], dim=-1)
    else:  # cutmix
        top, left, bh, bw = p
        r0, c0 = round(top * h), round(left * w)
        r1, c1 = min(h, r0 + max(1, round(bh * h))), min(w, c0 + max(1, round(bw * w)))
        out = adv[:, 0].clone()
        out[..., r0:r1, c0:c1] = adv[:, 1, ..., r0:r1, c0:c1]
    if norm == "l2" and mask is None:
        return enforce_budget(originals, out, eps, cap)  # the paper's path (unchanged uncapped)
    return apply_budget(originals, out, eps, norm=norm, mask=mask, cap=cap)
