"""Error-minimizing ("unlearnable") noise, Huang et al., ICLR 2021, split for a streaming job.

The method solves ``min_theta E min_{||delta|| <= eps} CE(f_theta(x + delta), y)``: noise that
makes every image *too easy* for its own label, so a model trained on the release learns the
noise instead of the anatomy. Huang et al. solve it by alternating (the "min-min" loop):
train the model a few steps on the perturbed images, then move every image's noise a few
steps *down* the loss of its own label, until the model is near-perfect on the perturbed set.

An archive job cannot run that loop over millions of cases. So crafting has two phases:

1. :func:`craft_surrogate` runs the min-min loop on a labelled *sample* of slices and keeps
   the jointly trained model(s): the surrogate, saved beside the key (``medcrypt craft``).
2. Each case is then perturbed on its own: error-minimizing PGD toward its own label against
   the fixed surrogate, with the key's EOT augmentation, inside the key's budget. That is
   :func:`~._poison.craft_poison` with the targets set to the labels, which is what the
   :class:`~._encrypt.Encryptor` runs in mode ``unlearnable`` (the key maps every class to
   itself, combiner ``none``).

Several surrogate architectures (a cross-family ensemble) are trained side by side in the loop
and the noise minimises their mean loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import Field
from torch import nn

from medcrypt._types import ProgressCallback
from medcrypt.config import StrictModel
from medcrypt.errors import ModelError
from medcrypt.processing.models._device import resolve_device
from medcrypt.processing.models._nets import Classifier, build_model
from medcrypt.processing.models._training import normalisation_of, predict
from medcrypt.processing.protection._augment import augment, draw_augmentation
from medcrypt.processing.protection._poison import craft_poison
from medcrypt.processing.protection._robust import adversarial_rho, random_rho
from medcrypt.processing.protection._settings import PGDSettings

__all__ = [
    "MinMinResult",
    "MinMinSettings",
    "craft_surrogate",
    "crafting_sample",
    "error_minimizing",
]

logger = logging.getLogger(__name__)


class MinMinSettings(StrictModel):
    """The min-min loop of :func:`craft_surrogate` (the noise's budget comes from the key's
    :class:`PGDSettings`: eps, norm, linf_cap, foreground, augment, precision; its step is
    the loop's own, ``noise_step``).

    Attributes:
        archs: surrogate architectures trained side by side (a cross-family ensemble when
            several); the noise minimises their mean loss.
        width: width of every surrogate (see ``build_model``).
        train_steps: minibatch steps of every surrogate per round.
        noise_steps: error-minimizing steps of every image's noise per round.
        noise_step: length of each of those steps; default ``2.5 * eps / 20``, the default
            mode's per-case step, whatever the key's per-case ``iters`` and ``step``: the
            loop's step must not shrink when the per-case crafting takes more, smaller steps
            (with the key's 2.5 * eps / 100 the loop stopped at its round limit short of its
            stop accuracy, issue 23).
        batch_size: minibatch of the surrogate steps and of the noise steps.
        lr, weight_decay: AdamW settings of the surrogates.
        stop_accuracy: stop once the first surrogate classifies this share of the perturbed
            sample correctly (Huang et al.: 99%).
        max_rounds: stop after this many rounds in any case.
        robust: robust error-minimizing noise (:mod:`._robust`): the surrogate trains, and
            the noise minimises, at ``x + delta + rho`` with ``||rho||_2 = robust * eps`` on
            the foreground; 0 = plain min-min (Huang et al.). REM and SEM use half the radius.
        robust_steps: 0 = ``rho`` is one random draw (SEM); k > 0 = the surrogate trains at
            ``rho`` found by k L2 ascent steps (REM's adversarial training; the noise steps
            keep the random draw, REM's nested attack being too dear here).
    """

    archs: tuple[str, ...] = Field(default=("cnn",), min_length=1)
    width: int = Field(default=16, ge=1)
    train_steps: int = Field(default=20, ge=1)
    noise_steps: int = Field(default=10, ge=1)
    noise_step: float | None = Field(default=None, gt=0.0)
    batch_size: int = Field(default=64, ge=2)
    lr: float = Field(default=2e-3, gt=0.0)
    weight_decay: float = Field(default=5e-4, ge=0.0)
    stop_accuracy: float = Field(default=0.99, gt=0.0, le=1.0)
    max_rounds: int = Field(default=15, ge=1)
    robust: float = Field(default=0.0, ge=0.0, le=1.0)
    robust_steps: int = Field(default=0, ge=0)


@dataclass
class MinMinResult:
    """What :func:`craft_surrogate` made.

    Attributes:
        models: the surrogates (eval mode, on the crafting device), ``settings.archs`` order.
        deltas: (N, H, W) float32 noise of the sample (release = clamp(x + delta)).
        accuracy: the first surrogate's accuracy on the perturbed sample after each round.
        rounds: rounds run.
    """

    models: list[Classifier]
    deltas: np.ndarray
    accuracy: list[float] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return len(self.accuracy)


def crafting_sample(labels: np.ndarray, n_classes: int, share: float, seed: int) -> np.ndarray:
    """Sorted indices of the min-min sample: ``share`` of every class, at least 4 slices each
    (all of a smaller class), drawn with ``seed``; everything when ``share >= 1``."""
    y = np.asarray(labels)
    if share >= 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = [
        rng.permutation(np.flatnonzero(y == c))[: max(4, round(share * int((y == c).sum())))]
        for c in range(n_classes)
    ]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def error_minimizing(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    settings: PGDSettings,
    mask: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
    iters: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    jitter: float = 0.0,
) -> torch.Tensor:
    """Noise (N, C, H, W) that lowers every image's loss for its *own* label, in batches.

    ``craft_poison`` toward ``labels`` (the same code the Encryptor runs per case), one
    restart, ``iters`` steps (default ``settings.iters``), from ``start`` (default zero),
    ``jitter``: see ``craft_poison`` (robust noise).
    """
    cfg = settings.model_copy(update={"restarts": 1, **({"iters": iters} if iters else {})})
    out = torch.empty_like(images)
    for i in range(0, images.shape[0], batch_size):
        sl = slice(i, i + batch_size)
        res = craft_poison(
            list(models),
            images[sl],
            labels[sl],
            settings=cfg,
            mask=None if mask is None else mask[sl],
            seed=seed + i,
            start=None if start is None else start[sl],
            jitter=jitter,
        )
        out[sl] = res.images - images[sl]
    return out


def _rho(
    mm: MinMinSettings,
    model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    radius: float,
    mask: torch.Tensor | None,
    idx: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    m = None if mask is None else mask[idx]
    if mm.robust_steps == 0:
        return random_rho(xb, radius, m, gen)
    model.eval()  # the attack sees the model as it predicts
    rho = adversarial_rho([model], xb, yb, radius, m, steps=mm.robust_steps, generator=gen)
    model.train()
    return rho


def craft_surrogate(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    settings: PGDSettings,
    minmin: MinMinSettings | None = None,
    masks: np.ndarray | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> MinMinResult:
    """Run the min-min loop on a labelled sample; return the surrogate(s) and the noise.

    Args:
        images: (N, H, W) float32 in [0, 1], the crafting sample.
        labels: (N,) ints in ``range(n_classes)``.
        settings: the key's budget (eps, norm, linf_cap, foreground, augment, precision); its
            per-case ``step`` and ``iters`` are not the loop's (``minmin.noise_step``).
        minmin: the loop's own settings (:class:`MinMinSettings`).
        masks: (N, H, W) bool foreground where ``settings.foreground`` (else ignored).
        seed: surrogate initialisation, minibatch order, augmentation and noise draws.
        progress: ``progress(round, max_rounds, "round k: accuracy a")``.

    Raises:
        ModelError: empty sample, mismatched labels, a class missing from the sample.
    """
    mm = minmin or MinMinSettings()
    dev = torch.device(resolve_device(device))
    step = mm.noise_step if mm.noise_step is not None else 2.5 * settings.eps / 20
    loop_settings = settings.model_copy(update={"step": step})
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if x.shape[0] < 2 or y.shape != (x.shape[0],):
        raise ModelError(
            f"min-min needs at least 2 labelled images, got images {tuple(x.shape)} and "
            f"labels {tuple(y.shape)}"
        )
    missing = sorted(set(range(n_classes)) - set(y.tolist()))
    if missing:
        raise ModelError(f"the crafting sample has no image of class(es) {missing}")
    x, y = x.to(dev), y.to(dev)
    mask = None
    if settings.foreground and masks is not None:
        mask = torch.as_tensor(np.asarray(masks, dtype=bool)).unsqueeze(1).to(dev, torch.float32)
    norm = normalisation_of(x)  # as train_model fits it
    models: list[Classifier] = []
    optims: list[torch.optim.Optimizer] = []
    for j, arch in enumerate(mm.archs):
        model = build_model(arch, n_classes, width=mm.width, seed=seed + 1000 * j)
        model.set_normalisation(norm)
        model.to(dev)
        models.append(model)
        optims.append(torch.optim.AdamW(model.parameters(), lr=mm.lr, weight_decay=mm.weight_decay))
    gen = torch.Generator().manual_seed(seed)
    delta = torch.zeros_like(x)
    n = x.shape[0]
    strength = settings.augment if settings.augment > 0 else 1.0
    accuracy: list[float] = []
    loss_fn = nn.CrossEntropyLoss()
    radius = mm.robust * settings.eps
    for rnd in range(1, mm.max_rounds + 1):
        for model, opt in zip(models, optims, strict=True):
            model.train()
            for _ in range(mm.train_steps):
                idx = torch.randint(0, n, (min(mm.batch_size, n),), generator=gen).to(dev)
                draw = draw_augmentation(idx.numel(), strength, device=dev, generator=gen)
                xb = (x[idx] + delta[idx]).clamp(0.0, 1.0)
                if mm.robust > 0:  # train at a (random or adversarial) point near the release
                    xb = (xb + _rho(mm, model, xb, y[idx], radius, mask, idx, gen)).clamp(0, 1)
                xb = augment(xb, draw)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(xb), y[idx]).backward()
                opt.step()
            model.eval()
        delta = error_minimizing(
            models,
            x,
            y,
            settings=loop_settings,
            mask=mask,
            start=delta,
            iters=mm.noise_steps,
            seed=seed + 7919 * rnd,
            batch_size=max(mm.batch_size, 256),
            jitter=radius,
        )
        pred = predict(models[0], (x + delta).clamp(0.0, 1.0))
        acc = float((torch.as_tensor(pred) == y.cpu()).double().mean())
        accuracy.append(acc)
        logger.info("min-min round %d: surrogate accuracy %.4f on the perturbed sample", rnd, acc)
        if progress is not None:
            progress(rnd, mm.max_rounds, f"round {rnd}: accuracy {acc:.3f}")
        if acc >= mm.stop_accuracy:
            break
    deltas = delta[:, 0].detach().cpu().numpy().astype(np.float32)
    return MinMinResult(models=models, deltas=deltas, accuracy=accuracy)
