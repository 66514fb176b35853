"""Training loop: seeded, per-epoch history, progress and per-epoch evaluation callbacks."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from medcrypt._types import ProgressCallback
from medcrypt.config import StrictModel
from medcrypt.errors import ModelError
from medcrypt.processing.models._device import resolve_device
from medcrypt.processing.models._nets import Classifier, Normalisation
from medcrypt.processing.models._views import random_views

__all__ = [
    "BatchHook",
    "EpochCallback",
    "EpochRecord",
    "TrainSettings",
    "evaluate_accuracy",
    "predict",
    "to_tensor",
    "train_model",
]

logger = logging.getLogger(__name__)

#: ``on_epoch(epoch, model)`` after every epoch (1-based), model in eval mode; may return named
#: metrics (e.g. accuracy on several test sets) that are stored in that epoch's record.
EpochCallback = Callable[[int, nn.Module], "Mapping[str, float] | None"]

#: ``batch_hook(model, images, labels) -> images`` replaces each (augmented) training batch
#: before the model sees it, e.g. with adversarial examples (adversarial training). Called with
#: the model in train mode, on the training device.
BatchHook = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainSettings(StrictModel):
    """Optimisation settings for :func:`train_model`."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=5e-4, ge=0.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    #: random translation by up to ``shift`` pixels (reflect padding); 0 = no augmentation.
    #: No flips: a horizontal flip would mirror a concat key's split.
    shift: int = Field(default=0, ge=0)
    #: a thief's standard augmentation (see ``_views``): random horizontal flips, rotations
    #: of up to ``rotate`` degrees, random resized crops of area share ``crop_scale``-1
    #: (1 = no crop). All off by default (the crafting-side victims of earlier rounds).
    flip: bool = False
    rotate: float = Field(default=0.0, ge=0.0, le=180.0)
    crop_scale: float = Field(default=1.0, gt=0.0, le=1.0)
    #: mixup (Zhang et al. 2018) with Beta(mixup, mixup) weights; 0 = off
    mixup: float = Field(default=0.0, ge=0.0)
    #: ``cosine``: cosine annealing per epoch; ``onecycle``: one-cycle per step (peak ``lr``)
    schedule: Literal["cosine", "onecycle"] = "cosine"


class EpochRecord(StrictModel):
    """One epoch of training history."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) images in [0, 1] -> float32 tensor (N, C, H, W)."""
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise ModelError(f"expected images shaped (N, H, W) or (N, C, H, W), got {tuple(t.shape)}")
    return t.to(torch.float32)


def _labels_tensor(labels: Sequence[int] | np.ndarray, n: int) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if y.ndim != 1 or y.shape[0] != n:
        raise ModelError(f"expected {n} labels, got shape {tuple(y.shape)}")
    return y


def _shift(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    if shift <= 0:
        return x
    h, w = x.shape[-2:]
    padded = nn.functional.pad(x, (shift, shift, shift, shift), mode="reflect")
    offs = torch.randint(0, 2 * shift + 1, (x.shape[0], 2), generator=gen)
    return torch.stack(
        [padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offs.tolist())]
    )


def _model_device(model: nn.Module) -> str:
    for t in (*model.parameters(), *model.buffers()):
        return str(t.device)
    return "cpu"


@torch.no_grad()
def predict(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    device: str = "auto",
) -> np.ndarray:
    """Predicted class (int64, shape (N,)) of each image, model in eval mode.

    ``device="auto"`` runs where the model's weights are; an explicit device moves the model.
    """
    dev = _model_device(model) if device in (None, "auto") else resolve_device(device)
    if device not in (None, "auto"):
        model.to(dev)
    x = to_tensor(images)
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, x.shape[0], batch_size):
            out.append(model(x[i : i + batch_size].to(dev)).argmax(1).cpu())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros(0, dtype=np.int64)
    return torch.cat(out).numpy().astype(np.int64)


def evaluate_accuracy(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray,
    *,
    batch_size: int = 256,
    device: str = "auto",
) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``images`` / ``labels``."""
    pred = predict(model, images, batch_size=batch_size, device=device)
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != pred.shape:
        raise ModelError(f"expected {pred.shape[0]} labels, got shape {y.shape}")
    return float((pred == y).mean()) if y.size else float("nan")


def normalisation_of(x: torch.Tensor) -> Normalisation:
    """Per-channel mean / std (std at least 1e-3) of (N, C, H, W) images: what a model fits."""
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return Normalisation(mean=tuple(mean.tolist()), std=tuple(std.tolist()))


def train_model(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray,
    *,
    seed: int,
    settings: TrainSettings | None = None,
    val_images: np.ndarray | torch.Tensor | None = None,
    val_labels: Sequence[int] | np.ndarray | None = None,
    device: str = "auto",
    fit_normalisation: bool = True,
    progress: ProgressCallback | None = None,
    on_epoch: EpochCallback | None = None,
    batch_hook: BatchHook | None = None,
) -> list[EpochRecord]:
    """Train ``model`` in place with cross-entropy; return the per-epoch history.

    Args:
        model: usually from :func:`~medcrypt.processing.build_model`.
        images: (N, H, W) or (N, C, H, W) float32 in [0, 1].
        labels: N ints in ``range(num_classes)``.
        seed: seeds shuffling, augmentation and dropout (same seed, same data, same
            device -> same weights).
        settings: optimiser settings (defaults: :class:`TrainSettings`).
        val_images, val_labels: optional validation set, accuracy recorded per epoch.
        fit_normalisation: set the model's input normalisation to the training set's
            per-channel mean/std before training (models without ``set_normalisation``
            are left alone).
        progress: ``progress(done_epochs, epochs, "epoch k/n")``.
        on_epoch: see :data:`EpochCallback`.
        batch_hook: see :data:`BatchHook` (``None``: batches are used as drawn).

    The model is left in eval mode on ``device``.
    """
    cfg = settings or TrainSettings()
    dev = resolve_device(device)
    x = to_tensor(images)
    y = _labels_tensor(labels, x.shape[0])
    if x.shape[0] == 0:
        raise ModelError("cannot train on an empty data set")
    if (val_images is None) != (val_labels is None):
        raise ModelError("give both val_images and val_labels, or neither")
    if fit_normalisation and isinstance(model, Classifier):
        model.set_normalisation(normalisation_of(x))
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if cfg.optimizer == "adam":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True
        )
    n = x.shape[0]
    steps = math.ceil(n / cfg.batch_size)
    sched: torch.optim.lr_scheduler.LRScheduler
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=max(cfg.epochs * steps, 2)
        )
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    gen = torch.Generator().manual_seed(seed)
    mix_rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    history: list[EpochRecord] = []
    devices = [torch.device(dev)] if dev.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen)
            total_loss, correct, seen = 0.0, 0, 0
            for s in range(steps):
                idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                if idx.numel() < 2 and n >= 2:
                    continue  # a batch of one breaks batch norm; its sample reappears next epoch
                xb = _shift(x[idx], cfg.shift, gen)
                xb = random_views(
                    xb, flip=cfg.flip, rotate=cfg.rotate, crop_scale=cfg.crop_scale, generator=gen
                ).to(dev)
                yb = y[idx].to(dev)
                if batch_hook is not None:
                    xb = batch_hook(model, xb, yb)
                opt.zero_grad(set_to_none=True)
                if cfg.mixup > 0:
                    lam = float(mix_rng.beta(cfg.mixup, cfg.mixup))
                    perm = torch.randperm(xb.shape[0], generator=gen).to(dev)
                    logits = model(lam * xb + (1 - lam) * xb[perm])
                    loss = lam * loss_fn(logits, yb) + (1 - lam) * loss_fn(logits, yb[perm])
                else:
                    logits = model(xb)
                    loss = loss_fn(logits, yb)
                loss.backward()
                opt.step()
                if cfg.schedule == "onecycle":
                    sched.step()
                total_loss += float(loss.detach()) * idx.numel()
                correct += int((logits.detach().argmax(1) == yb).sum())
                seen += idx.numel()
            if cfg.schedule == "cosine":
                sched.step()
            model.eval()
            val_acc = None
            if val_images is not None and val_labels is not None:
                val_acc = evaluate_accuracy(model, val_images, val_labels, device=dev)
            extra = dict(on_epoch(epoch, model) or {}) if on_epoch is not None else {}
            model.eval()
            record = EpochRecord(
                epoch=epoch,
                train_loss=total_loss / max(seen, 1),
                train_accuracy=correct / max(seen, 1),
                val_accuracy=val_acc,
                metrics={k: float(v) for k, v in extra.items()},
            )
            history.append(record)
            logger.info(
                "epoch %d/%d: loss %.4f, train acc %.3f, val acc %s",
                epoch,
                cfg.epochs,
                record.train_loss,
                record.train_accuracy,
                "-" if val_acc is None else f"{val_acc:.3f}",
            )
            if progress is not None:
                progress(epoch, cfg.epochs, f"epoch {epoch}/{cfg.epochs}")
    model.eval()
    return history
