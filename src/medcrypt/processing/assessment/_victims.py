"""Victim models: train a fresh classifier on some images and score it per epoch on test sets.

What the counter-attack audit and the protection benchmarks share. A *victim* is the
attacker's model, trained from scratch on (possibly preprocessed) released images. After every
epoch it is scored on each named test set by accuracy and by **balanced accuracy** (mean
per-class recall): on an imbalanced test split (figshare-btd's majority class is 44%) plain
accuracy can look protected or unprotected by class share alone. Both are kept per epoch, and
summarised as final (last epoch) and peak (best epoch: what an attacker who early-stops on a
labelled set of their own would get).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from medcrypt._types import ProgressCallback
from medcrypt.config import StrictModel
from medcrypt.processing.models._nets import Classifier, build_model
from medcrypt.processing.models._training import BatchHook, TrainSettings, predict, train_model

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "THIEF_FAMILIES",
    "SetScores",
    "VictimScores",
    "balanced_accuracy",
    "fit_victim",
    "score_predictions",
    "thief_settings",
    "train_victim",
]

#: the four victim families a thief trains, at their standard widths (``build_model``'s
#: ``width``: 64 for ResNet-18, VGG-11 and DenseNet-121 (growth 32); the plain CNN at 64 has
#: widths 64-512 over its five layers). Width 16 stays the fast screen of earlier rounds.
THIEF_FAMILIES: tuple[str, ...] = ("resnet18", "vgg11", "cnn", "densenet121")


def thief_settings(epochs: int = 10, *, mixup: float = 0.0) -> TrainSettings:
    """How a thief trains a victim from scratch: AdamW with a one-cycle schedule (peak 2e-3,
    weight decay 0.05), batch 64, random flips, rotations up to 10 degrees and random
    resized crops of 80-100% of the area (torchvision's usual recipe, scaled to a small set);
    mixup as an option."""
    return TrainSettings(
        epochs=epochs,
        batch_size=64,
        lr=2e-3,
        weight_decay=5e-2,
        optimizer="adam",
        schedule="onecycle",
        flip=True,
        rotate=10.0,
        crop_scale=0.8,
        mixup=mixup,
    )


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``truth`` (scikit-learn's definition).

    Written with numpy so that the audit runs where scikit-learn is not installed (the GPU
    image); the unit test checks it against ``sklearn.metrics.balanced_accuracy_score``.
    """
    t = np.asarray(truth, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    if t.size == 0:
        return float("nan")
    recalls = [float((p[t == c] == c).mean()) for c in np.unique(t)]
    return float(np.mean(recalls))


def score_predictions(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of ``predicted`` against ``truth``."""
    t = np.asarray(truth, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    return float((t == p).mean()), balanced_accuracy(t, p)


class SetScores(StrictModel):
    """One victim on one test set: per-epoch accuracy and balanced accuracy, final and peak."""

    accuracy: tuple[float, ...] = Field(min_length=1)
    balanced: tuple[float, ...] = Field(min_length=1)

    @property
    def acc_final(self) -> float:
        """Accuracy after the last epoch."""
        return self.accuracy[-1]

    @property
    def acc_peak(self) -> float:
        """Best accuracy over epochs."""
        return max(self.accuracy)

    @property
    def bacc_final(self) -> float:
        """Balanced accuracy after the last epoch."""
        return self.balanced[-1]

    @property
    def bacc_peak(self) -> float:
        """Best balanced accuracy over epochs."""
        return max(self.balanced)

    def summary(self) -> dict[str, float]:
        """Final and peak accuracy and balanced accuracy, rounded for tables and JSON rows."""
        return {
            "acc_final": round(self.acc_final, 4),
            "acc_peak": round(self.acc_peak, 4),
            "bacc_final": round(self.bacc_final, 4),
            "bacc_peak": round(self.bacc_peak, 4),
        }


class VictimScores(StrictModel):
    """A victim of one architecture, scored on every named test set after every epoch."""

    arch: str
    width: int
    epochs: int
    scores: dict[str, SetScores]


def train_victim(
    arch: str,
    images: np.ndarray,
    labels: np.ndarray,
    tests: Mapping[str, tuple[np.ndarray, np.ndarray]],
    **kwargs: Any,
) -> VictimScores:
    """:func:`fit_victim`'s scores only (the trained model is dropped)."""
    return fit_victim(arch, images, labels, tests, **kwargs)[0]


def fit_victim(
    arch: str,
    images: np.ndarray,
    labels: np.ndarray,
    tests: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    n_classes: int,
    width: int = 8,
    settings: TrainSettings | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_hook: BatchHook | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[VictimScores, Classifier]:
    """Train a fresh ``arch`` (initialised from ``seed``) on ``images`` and score it per epoch.

    Args:
        arch, width: the victim (see :func:`~medcrypt.processing.build_model`).
        images, labels: the victim's training set, (N, H, W) float32 in [0, 1].
        tests: name -> (images, true labels), scored after every epoch.
        settings: optimiser settings (epochs, batch size, shift augmentation...).
        seed: initialisation, shuffling and augmentation seed (same seed, same victim).
        batch_hook: passed to :func:`train_model` (e.g. adversarial training).

    Returns:
        The per-epoch scores and the trained model (eval mode, on ``device``).
    """
    cfg = settings or TrainSettings()
    per_set: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in tests}

    def on_epoch(_epoch: int, model: nn.Module) -> None:
        for name, (x, y) in tests.items():
            acc, bacc = score_predictions(y, predict(model, x, device=device))
            per_set[name][0].append(acc)
            per_set[name][1].append(bacc)

    model = build_model(arch, n_classes, width=width, seed=seed)
    train_model(
        model,
        images,
        labels,
        seed=seed,
        settings=cfg,
        device=device,
        on_epoch=on_epoch,
        batch_hook=batch_hook,
        progress=progress,
    )
    scores = VictimScores(
        arch=arch,
        width=width,
        epochs=cfg.epochs,
        scores={
            k: SetScores(accuracy=tuple(acc), balanced=tuple(bacc))
            for k, (acc, bacc) in per_set.items()
        },
    )
    return scores, model
