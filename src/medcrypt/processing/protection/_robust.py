"""Robust error-minimizing noise: the surrogate and the noise see a perturbed point.

Plain error-minimizing noise (Huang et al. 2021) is undone by adversarial training: a thief
who trains on ``x + delta + rho`` with an adversarial ``rho`` no longer finds the noise an
easy shortcut. REM (Fu et al., ICLR 2022) therefore crafts the noise to minimise the loss at
the surrogate's *adversarial* point ``x + delta + rho*`` (``||rho|| <= r``, r about half the
noise radius) and trains the surrogate there too; SEM (Liu et al., AAAI 2024) replaces the
inner attack by one *random* draw at about a tenth of the cost. Both are written for L-inf on
CIFAR; here they are ported to the L2 budget and the foreground mask: ``rho`` is an L2
perturbation of norm ``r`` confined to the same foreground as the noise.

:func:`random_rho` is SEM's draw (a uniformly random direction on the masked sphere);
:func:`adversarial_rho` is REM's inner maximisation by a few normalised-gradient L2 ascent
steps. The min-min loop (``_unlearnable``) uses them when ``MinMinSettings.robust > 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medcrypt.processing.protection._foreground import project

__all__ = ["adversarial_rho", "random_rho"]


def random_rho(
    like: torch.Tensor,
    radius: float,
    mask: torch.Tensor | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """A random L2 perturbation of norm ``radius`` per row (on ``mask`` where given)."""
    g = torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.device)
    if mask is not None:
        g = g * mask
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (like.ndim - 1)))
    return g / norm * radius


def adversarial_rho(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    radius: float,
    mask: torch.Tensor | None,
    *,
    steps: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """A perturbation of L2 norm at most ``radius`` that *raises* the mean loss of ``models``
    at ``x`` (REM's inner maximisation): a random start, then ``steps`` normalised-gradient
    ascent steps of ``2.5 * radius / steps``, each projected back onto the masked ball."""
    rho = random_rho(x, radius, mask, generator)
    step = 2.5 * radius / max(steps, 1)
    for _ in range(steps):
        rho = rho.detach().requires_grad_(True)
        xa = (x + rho).clamp(0.0, 1.0)
        loss = sum(nn.functional.cross_entropy(m(xa), y) for m in models)
        (g,) = torch.autograd.grad(loss, rho)  # type: ignore[arg-type]
        with torch.no_grad():
            if mask is not None:
                g = g * mask
            gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
            rho = project(rho + step * g / gn, radius, "l2", mask)
    return rho.detach()
