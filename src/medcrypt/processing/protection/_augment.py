"""Differentiable augmentation for crafting: the expectation over the victim's likely
augmentations (TAP, Fowl et al. 2021, crafts through them).

One random draw per row and call: a horizontal flip (probability 1/2), a shift of up to 1/16
of the side, a rotation of up to 10 degrees and a scaling of up to 10%, each times the
strength, applied with one ``affine_grid`` / ``grid_sample`` (bilinear, zero padding: the
background of a slice is black), then an intensity scaling of up to 10% times the strength.
Every operation is a torch op, so gradients flow back to the input. At strength 0 the input
is returned unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["AugmentDraw", "augment", "draw_augmentation"]

_MAX_SHIFT = 1.0 / 16  # fraction of the side
_MAX_ROTATION = math.radians(10.0)
_MAX_SCALE = 0.10
_MAX_GAIN = 0.10


@dataclass(frozen=True)
class AugmentDraw:
    """One augmentation per row: ``theta`` (N, 2, 3) affine maps, ``gain`` (N,) intensities."""

    theta: torch.Tensor
    gain: torch.Tensor


def draw_augmentation(
    n: int,
    strength: float,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> AugmentDraw:
    """Draw ``n`` random augmentations of ``strength`` in [0, 1] (0: the identity)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"augmentation strength must lie in [0, 1], got {strength}")

    def u(lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

    flip = torch.where(u(0.0, 1.0) < 0.5, -1.0, 1.0) if strength > 0 else torch.ones(n)
    angle = u() * _MAX_ROTATION * strength
    scale = 1.0 + u() * _MAX_SCALE * strength
    shift = torch.stack([u(), u()], dim=1) * (2 * _MAX_SHIFT) * strength  # grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, :, 2] = shift
    gain = 1.0 + u() * _MAX_GAIN * strength
    return AugmentDraw(theta=_to_device(theta, device), gain=_to_device(gain, device))


def _to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """float32 on ``device``; to a GPU from pinned memory without waiting (a draw per PGD
    step must not make the host wait for the device: issue 24's no-sync check)."""
    t = t.to(torch.float32)
    dev = torch.device(device)
    if dev.type != "cuda":
        return t.to(dev)
    return t.pin_memory().to(dev, non_blocking=True)


def augment(x: torch.Tensor, draw: AugmentDraw | None) -> torch.Tensor:
    """Apply ``draw`` to (N, C, H, W) images ``x`` (differentiable); ``None``: ``x`` itself."""
    if draw is None:
        return x
    if draw.theta.shape != (x.shape[0], 2, 3) or draw.gain.shape != (x.shape[0],):
        raise ValueError(
            f"augmentation for {draw.theta.shape[0]} rows applied to {x.shape[0]} images"
        )
    theta = draw.theta.to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped * draw.gain.to(x.dtype).view(-1, 1, 1, 1)
