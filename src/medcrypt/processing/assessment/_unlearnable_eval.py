"""The protection evaluation of the default mode, ``unlearnable`` (Table-12 protocol, issue 23).

The product judges what it releases by default:

1. The surrogate is crafted on a sample of the training split as ``medcrypt craft`` does: the
   min-min loop on ``sample`` of every class (at least 4 slices each).
2. Every slice of the training split is then released on its own against that surrogate,
   toward its true label; the test split too, toward the surrogate's *predicted* label (new
   data comes unlabelled). Released images are quantised to 16 bits with eps and the
   per-pixel cap re-checked, as when they are written.
3. For every victim family a fresh model is trained on the released training split and, with
   the same seed and settings, a clean baseline on the original one (the victim API of
   ``_victims``). After every epoch the released-data victim is scored on the released test
   split (is the release still a task?) and on the original test split (what a thief gets),
   by accuracy and balanced accuracy.

The report is a :class:`ProtectionReport` (its ``base_arch`` is the surrogate's); judged by
:meth:`ProtectionReport.verdict` (peak original-test balanced accuracy at most 50%).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from torch import nn

from medcrypt._types import ProgressCallback
from medcrypt.errors import ConfigError, ModelError
from medcrypt.processing.assessment._evaluation import (
    _checked_splits,
    _recall_per_class,
    encrypt_splits,
)
from medcrypt.processing.assessment._report import (
    ArchitectureResult,
    EpochScores,
    ProtectionReport,
    ProtectionSettings,
)
from medcrypt.processing.assessment._victims import SetScores, VictimScores, fit_victim
from medcrypt.processing.models._device import resolve_device
from medcrypt.processing.models._training import evaluate_accuracy, predict
from medcrypt.processing.protection._foreground import foreground_masks
from medcrypt.processing.protection._keys import EncryptionKey
from medcrypt.processing.protection._settings import PGDSettings
from medcrypt.processing.protection._unlearnable import (
    MinMinSettings,
    craft_surrogate,
    crafting_sample,
)

__all__ = ["evaluate_unlearnable"]

logger = logging.getLogger(__name__)


def _result(
    arch: str, width: int, clean: SetScores, real: SetScores, release: SetScores
) -> ArchitectureResult:
    clean_final = clean.acc_final
    history = tuple(
        EpochScores(
            epoch=i + 1,
            clean_baseline=clean.accuracy[i] if i < len(clean.accuracy) else None,
            encrypted_test=release.accuracy[i],
            original_test=real.accuracy[i],
        )
        for i in range(len(real.accuracy))
    )
    return ArchitectureResult(
        arch=arch,
        width=width,
        clean_final=clean_final,
        clean_peak=clean.acc_peak,
        encrypted_test_final=release.acc_final,
        encrypted_test_peak=release.acc_peak,
        original_test_final=real.acc_final,
        original_test_peak=real.acc_peak,
        relative_final=release.acc_final / clean_final if clean_final > 0 else float("nan"),
        history=history,
        original_test_balanced_final=real.bacc_final,
        original_test_balanced_peak=real.bacc_peak,
    )


def evaluate_unlearnable(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    class_names: tuple[str, ...],
    pgd: PGDSettings,
    settings: ProtectionSettings | None = None,
    minmin: MinMinSettings | None = None,
    sample: float = 0.25,
    device: str = "auto",
    dataset: str = "unnamed",
    progress: ProgressCallback | None = None,
) -> ProtectionReport:
    """Craft, release and attack the default mode (see the module docstring).

    Args:
        train_images, train_labels: (N, H, W) float32 in [0, 1] and true labels.
        test_images, test_labels: held-out originals and their true labels.
        class_names: the classes, in label order.
        pgd: the mode unlearnable settings (eps, per-case iters and step, linf_cap, ...).
        settings: victim families, width, training settings (``settings.train``), seed.
        minmin: the min-min loop (surrogate arch and width among them).
        sample: share of every class the surrogate is crafted on (as ``craft --sample``).

    Raises:
        ConfigError: not mode unlearnable, an unknown architecture, or an empty split.
        ModelError: a class missing from the crafting sample, data and classes that disagree.
    """
    cfg = settings or ProtectionSettings()
    mm = minmin or MinMinSettings()
    if pgd.mode != "unlearnable":
        raise ConfigError(f"evaluate_unlearnable judges mode unlearnable, not {pgd.mode!r}")
    x_train, y_train, x_test, y_test = _checked_splits(
        (*cfg.archs, *mm.archs), train_images, train_labels, test_images, test_labels
    )
    n_classes = len(class_names)
    if max(int(y_train.max()), int(y_test.max())) >= n_classes:
        raise ModelError(f"labels beyond the {n_classes} classes {list(class_names)}")
    dev = resolve_device(device)
    t0 = time.perf_counter()

    def say(done: int, total: int | None, what: str) -> None:
        if progress is not None:
            progress(done, total, what)

    idx = crafting_sample(y_train, n_classes, sample, cfg.seed)
    crafted = craft_surrogate(
        x_train[idx],
        y_train[idx],
        n_classes=n_classes,
        settings=pgd,
        minmin=mm,
        masks=foreground_masks(x_train[idx]) if pgd.foreground else None,
        seed=cfg.seed,
        device=dev,
        progress=lambda r, n, what: say(r, n, f"min-min {what}"),
    )
    surrogate = crafted.models[0]
    logger.info(
        "min-min on %d slices: %d rounds, accuracy %.3f",
        len(idx),
        crafted.rounds,
        crafted.accuracy[-1],
    )
    key = EncryptionKey.generate(class_names, combiner="none", seed=cfg.seed, pgd=pgd)
    splits = encrypt_splits(
        surrogate,
        key,
        x_train,
        y_train,
        x_test,
        device=dev,
        settings=pgd,
        batch_size=cfg.batch_size,
        progress=progress,
    )
    real, release = (x_test, y_test), (splits.test_images, y_test)
    results = []

    def victim(
        arch: str, images: np.ndarray, tests: dict[str, tuple[np.ndarray, np.ndarray]], what: str
    ) -> tuple[VictimScores, nn.Module]:
        def relabel(done: int, total: int | None, text: str) -> None:
            say(done, total, f"{arch} on the {what} {text}")

        return fit_victim(
            arch,
            images,
            y_train,
            tests,
            n_classes=n_classes,
            width=cfg.width,
            settings=cfg.train,
            seed=cfg.seed,
            device=dev,
            progress=relabel,
        )

    for arch in cfg.archs:
        clean, _ = victim(arch, x_train, {"real": real}, "clean data")
        scores, model = victim(
            arch, splits.train_images, {"real": real, "release": release}, "release"
        )
        result = _result(
            arch, cfg.width, clean.scores["real"], scores.scores["real"], scores.scores["release"]
        )
        recall = _recall_per_class(y_test, predict(model, x_test, device=dev), n_classes)
        results.append(result.model_copy(update={"original_test_recall": tuple(recall)}))
        logger.info(
            "%s: clean %.3f, release-on-itself %.3f, original test balanced peak %.3f",
            arch,
            result.clean_final,
            result.encrypted_test_final,
            result.original_test_balanced_peak,
        )
    chance = float(np.bincount(y_test, minlength=n_classes).max() / len(y_test))
    return ProtectionReport(
        dataset=dataset,
        class_names=tuple(class_names),
        n_train=len(x_train),
        n_test=len(x_test),
        image_shape=(int(x_train.shape[1]), int(x_train.shape[2])),
        key_fingerprint=key.fingerprint,
        n_targets=tuple(len(t) for t in key.targets),
        pgd=pgd,
        settings=cfg,
        base_arch=f"{mm.archs[0]} (min-min on {len(idx)} slices, {crafted.rounds} rounds)",
        base_test_accuracy=evaluate_accuracy(surrogate, x_test, y_test, device=dev),
        chance_accuracy=chance,
        train_perceptual=splits.train_perceptual,
        test_perceptual=splits.test_perceptual,
        results=tuple(results),
        seconds=time.perf_counter() - t0,
    )
