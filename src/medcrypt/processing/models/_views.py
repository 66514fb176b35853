"""A thief's training augmentation: random views of a batch, as torchvision users train.

Per row and draw: a horizontal flip (probability 1/2), a rotation of up to ``rotate``
degrees, and a random resized crop (area share in ``[crop_scale, 1]``, aspect ratio in
[3/4, 4/3], placed uniformly where it fits) resized back to the input side. All three are one
``affine_grid`` / ``grid_sample`` (bilinear, zero padding: a slice's background is black).
Unlike the crafting augmentation (``protection._augment``), this is the *victim's* recipe and
draws from a seeded generator so that a victim is reproducible.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["random_views"]


def random_views(
    x: torch.Tensor,
    *,
    flip: bool,
    rotate: float,
    crop_scale: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random views of (N, C, H, W) images ``x``; the identity when nothing is switched on."""
    n = x.shape[0]
    if n == 0 or (not flip and rotate <= 0 and crop_scale >= 1.0):
        return x

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

    sign = torch.where(u(0.0, 1.0) < 0.5, -1.0, 1.0) if flip else torch.ones(n, dtype=torch.float64)
    angle = u(-1.0, 1.0) * math.radians(rotate)
    area = u(crop_scale, 1.0) if crop_scale < 1.0 else torch.ones(n, dtype=torch.float64)
    ratio = torch.exp(u(math.log(3 / 4), math.log(4 / 3))) if crop_scale < 1.0 else area
    cw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop side as a share of the image side
    ch = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = u(-1.0, 1.0) * (1.0 - cw)  # crop centre in grid units, inside the image
    cy = u(-1.0, 1.0) * (1.0 - ch)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cw * cos * sign
    theta[:, 0, 1] = -ch * sin
    theta[:, 1, 0] = cw * sin * sign
    theta[:, 1, 1] = ch * cos
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
