"""Poison-grade targeted crafting (TAP, Fowl et al. 2021) for the paper's class-targeted
objective: ``argmin_{||x'-x|| <= eps} E_aug mean_m CE(f_m(aug(x')), t)``.

Beside the paper's plain PGD (:func:`~medcrypt.processing.protection._pgd.targeted_pgd_l2`)
this adds
what TAP's authors found to matter:

* differentiable augmentation in the loop (:mod:`._augment`): a fresh random draw per step
  and row, so the perturbation survives the victim's shifts, flips, rotations and scalings;
* restarts: the first from the clean image, the others from a random point of the ball; per
  row the restart with the lowest (un-augmented, ensemble-mean) target loss is kept;
* an L-infinity budget beside L2 (sign steps, clamp projection), and a per-pixel cap
  (``linf_cap``) held together with the L2 budget in every projection;
* a crafting ensemble: the loss is averaged over several models;
* a foreground mask: gradients, steps and projections are confined to it.

Without augmentation and with ``best_iterate`` the best iterate of each restart is kept, as
in the paper's code; with augmentation every step's loss is of another random view, so the
last iterate of each restart is scored on the clean view instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from medcrypt.errors import EncryptionKeyError
from medcrypt.processing.protection._augment import augment, draw_augmentation
from medcrypt.processing.protection._foreground import project
from medcrypt.processing.protection._pgd import PGDOutput, frozen_eval, resolve_precision
from medcrypt.processing.protection._robust import random_rho
from medcrypt.processing.protection._settings import PGDSettings

__all__ = ["craft_poison"]


def _random_start(
    x: torch.Tensor,
    eps: float,
    norm: str,
    mask: torch.Tensor | None,
    gen: torch.Generator,
    cap: float | None = None,
) -> torch.Tensor:
    noise = torch.rand(x.shape, generator=gen, dtype=torch.float32).to(x.device) * 2 - 1
    if norm == "linf":
        d = noise * eps
    else:
        d = noise if mask is None else noise * mask
        n = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        radius = torch.rand(x.shape[0], generator=gen).to(x.device).view(-1, 1, 1, 1)
        d = d / n * eps * radius
    return project(d, eps, norm, mask, cap)


def craft_poison(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    settings: PGDSettings,
    eps: float | None = None,
    mask: torch.Tensor | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    start: torch.Tensor | None = None,
    jitter: float = 0.0,
) -> PGDOutput:
    """Targeted crafting toward ``targets[i]`` for every row ``images[i]``.

    Args:
        models: the crafting ensemble over [0, 1] images, all on ``images``' device; the
            first one decides ``reached``.
        images: (N, C, H, W) float32 in [0, 1]: the start (the clean image, or the clean
            image plus a shortcut pattern in ``shortcut+poison``).
        targets: (N,) int64 target classes.
        settings: step, iters, norm, restarts, augment, best_iterate, precision.
        eps: budget around ``images`` (default ``settings.eps``).
        mask: (N, 1, H, W) foreground (1 = may change), or None for the whole image.
        num_classes: if given, targets are checked to lie in ``range(num_classes)``.
        seed: seed of the random starts and augmentation draws (reproducible crafting).
        start: (N, C, H, W) perturbation the first restart starts from (default zero): the
            min-min loop of :mod:`._unlearnable` carries its noise over from round to round.
        jitter: L2 radius of a random perturbation (on ``mask``) added to every step's view
            (SEM-style robust noise, :mod:`._robust`); 0 = none (no random draw is made).

    Raises:
        EncryptionKeyError: a target is out of range.
        ValueError: no model, or images and targets of mismatched shapes.
    """
    if not models:
        raise ValueError("craft_poison needs at least one crafting model")
    if images.ndim != 4 or targets.shape != (images.shape[0],):
        raise ValueError(
            f"expected images (N, C, H, W) and targets (N,), got {tuple(images.shape)} "
            f"and {tuple(targets.shape)}"
        )
    budget = settings.eps if eps is None else float(eps)
    norm = settings.norm
    cap = settings.linf_cap  # every projection keeps the per-pixel cap beside the budget
    targets = targets.to(images.device, torch.long)
    if num_classes is not None and targets.numel():
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= num_classes:
            raise EncryptionKeyError(
                f"PGD targets must lie in range({num_classes}), got values from {lo} to {hi}"
            )
    bf16, channels_last = resolve_precision(settings, images.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    autocast = (
        torch.autocast(device_type=images.device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    x0 = images.detach().to(torch.float32).contiguous(memory_format=fmt)
    m = None if mask is None else mask.to(x0.device, torch.float32)
    n = x0.shape[0]
    gen = torch.Generator().manual_seed(int(seed))

    def losses(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy over the ensemble (N,), the first model's logits)."""
        total = torch.zeros(n, device=x.device)
        first = None
        for model in models:
            with autocast:
                logits = model(x)
            logits = logits.float()
            total = total + nn.functional.cross_entropy(logits, targets, reduction="none")
            first = logits if first is None else first
        assert first is not None
        return total / len(models), first

    def step_from(delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        g = grad if m is None else grad * m
        if norm == "linf":
            d = delta - settings.step * g.sign()
        else:
            gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            d = delta - settings.step * g / gn
        d = project(d, budget, norm, m, cap)
        return (x0 + d).clamp(0.0, 1.0) - x0  # stay in [0, 1]

    best_x = x0.clone()
    best_loss = torch.full((n,), float("inf"), device=x0.device)
    best_hit = torch.zeros(n, dtype=torch.bool, device=x0.device)

    def consider(cand: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor) -> None:
        better = loss < best_loss
        best_loss.copy_(torch.where(better, loss, best_loss))
        best_hit.copy_(torch.where(better, logits.argmax(1) == targets, best_hit))
        best_x.copy_(torch.where(better.view(-1, 1, 1, 1), cand, best_x))

    track_iterates = settings.augment == 0.0 and settings.best_iterate
    contexts = [frozen_eval(model) for model in models]
    with contextlib.ExitStack() as stack:
        for ctx in contexts:
            stack.enter_context(ctx)
        for r in range(settings.restarts):
            if r > 0:
                delta = _random_start(x0, budget, norm, m, gen, cap)
            elif start is None:
                delta = torch.zeros_like(x0)
            else:
                delta = project(start.to(x0.device, torch.float32), budget, norm, m, cap)
            delta = ((x0 + delta).clamp(0.0, 1.0) - x0).contiguous(memory_format=fmt)
            for _ in range(settings.iters):
                delta.requires_grad_(True)
                x = x0 + delta
                if jitter > 0:
                    x = (x + random_rho(x, jitter, m, gen)).clamp(0.0, 1.0)
                draw = (
                    draw_augmentation(n, settings.augment, device=x.device, generator=gen)
                    if settings.augment > 0
                    else None
                )
                loss, logits = losses(augment(x, draw))
                (grad,) = torch.autograd.grad(loss.sum(), delta)
                with torch.no_grad():
                    if track_iterates:
                        consider(x.detach(), loss.detach(), logits.detach())
                    delta = step_from(delta.detach(), grad)
            with torch.no_grad():
                x = x0 + delta
                loss, logits = losses(x)
                consider(x, loss, logits)
    return PGDOutput(images=best_x.contiguous(), loss=best_loss.clone(), reached=best_hit.clone())
