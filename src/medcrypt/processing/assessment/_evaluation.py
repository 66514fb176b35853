"""Protection evaluation (paper Section 5, Table 12): does encryption make the data useless?

Protocol, as in the paper's code:

1. The *training split* is encrypted with its **true** labels; the *test split* with the base
   model's **predicted** labels (a data owner encrypting new data does not know its labels).
   Released images are quantised to 16 bits with the budget re-checked, exactly as they
   would be written.
2. For every architecture, a fresh model is trained on the encrypted training set (true
   labels) and, with the same seed and settings, a clean baseline on the original training
   set. After every epoch the encrypted model is scored on the encrypted test set and on the
   original test set, the baseline on the original test set.
3. The report gives, per architecture, accuracy **peak over epochs and final** for each, the
   ratio of encrypted-test to clean accuracy, and perceptual metrics (PSNR, SSIM, L2, L-inf)
   of the released images against the originals.

Protection works when the encrypted model does well on the encrypted test set (it learnt the
planted non-robust features) but badly on real images (what an attacker wants to use it for).

The settings and report models live in ``_report``; the phantom run end to end in ``_phantom``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from medcrypt._types import ProgressCallback
from medcrypt.errors import ConfigError, ModelError
from medcrypt.processing.assessment._report import (
    ArchitectureResult,
    EpochScores,
    PerceptualSummary,
    ProtectionReport,
    ProtectionSettings,
)
from medcrypt.processing.models._device import resolve_device
from medcrypt.processing.models._nets import ARCHITECTURES, build_model
from medcrypt.processing.models._training import (
    EpochCallback,
    EpochRecord,
    evaluate_accuracy,
    predict,
    train_model,
)
from medcrypt.processing.protection._encrypt import Encryptor
from medcrypt.processing.protection._keys import EncryptionKey
from medcrypt.processing.protection._metrics import psnr, ssim
from medcrypt.processing.protection._quantise import dequantise, quantise
from medcrypt.processing.protection._settings import PGDSettings

__all__ = [
    "PAPER_TARGETS",
    "EncryptedSplits",
    "encrypt_splits",
    "evaluate_protection",
    "paper_key",
]

logger = logging.getLogger(__name__)

#: The class correspondence of the paper's brain-MRI run (Section 5): y -> (t1, t2).
PAPER_TARGETS: tuple[tuple[int, int], ...] = ((1, 3), (2, 4), (3, 0), (4, 1), (0, 2))


def paper_key(
    class_names: Sequence[str],
    *,
    seed: int,
    pgd: PGDSettings | None = None,
    split_range: tuple[float, float] = (0.4, 0.6),
) -> EncryptionKey:
    """A Horizontal-Concat key with the paper's 5-class correspondence (Section 5).

    The correspondence ``0->(1,3), 1->(2,4), 2->(3,0), 3->(4,1), 4->(0,2)`` uses every class
    as a target exactly twice; the per-class split ratios are drawn from ``split_range`` with
    ``seed``. For another class count use :meth:`EncryptionKey.generate`.

    Raises:
        ConfigError: ``class_names`` does not have 5 entries.
    """
    names = tuple(class_names)
    if len(names) != len(PAPER_TARGETS):
        raise ConfigError(
            f"the paper's correspondence is for {len(PAPER_TARGETS)} classes, got {len(names)}",
            field="class_names",
        )
    rng = np.random.default_rng(seed)
    lo, hi = split_range
    splits = tuple((round(float(rng.uniform(lo, hi)), 6),) for _ in names)
    return EncryptionKey(
        class_names=names,
        targets=PAPER_TARGETS,
        combiner="concat",
        combiner_params=splits,
        pgd=pgd or PGDSettings(),
        seed=seed,
        secret=rng.bytes(32).hex(),
    )


@dataclass(frozen=True)
class EncryptedSplits:
    """Released (quantised) training and test images plus their encryption metadata."""

    train_images: np.ndarray
    test_images: np.ndarray
    test_encrypt_labels: np.ndarray
    train_perceptual: PerceptualSummary
    test_perceptual: PerceptualSummary


def _released(
    encryptor: Encryptor,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    progress: Callable[[int], None],
) -> tuple[np.ndarray, PerceptualSummary]:
    out = np.empty_like(images, dtype=np.float32)
    success = np.empty(len(images))
    k = max(len(t) for t in encryptor.key.targets)
    step = max(1, batch_size // k)
    for start in range(0, len(images), step):
        sl = slice(start, start + step)
        res = encryptor.encrypt(images[sl], labels[sl])
        cfg = encryptor.settings
        q = quantise(res.images, images[sl], eps=cfg.eps, norm=cfg.norm, linf_cap=cfg.linf_cap)
        out[sl] = dequantise(q)
        success[sl] = res.target_success
        progress(min(start + step, len(images)))
    diff = (out.astype(np.float64) - images.astype(np.float64)).reshape(len(images), -1)
    l2 = np.sqrt((diff**2).sum(axis=1))
    linf = np.abs(diff).max(axis=1)
    p = psnr(images, out)
    s = ssim(images, out)
    finite = p[np.isfinite(p)]
    summary = PerceptualSummary(
        n=len(images),
        psnr_mean=float(finite.mean()) if finite.size else float("inf"),
        psnr_min=float(p.min()),
        ssim_mean=float(s.mean()),
        ssim_min=float(s.min()),
        l2_mean=float(l2.mean()),
        l2_max=float(l2.max()),
        linf_mean=float(linf.mean()),
        linf_max=float(linf.max()),
        target_success=float(success.mean()),
    )
    return out, summary


def encrypt_splits(
    base_model: nn.Module,
    key: EncryptionKey,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    *,
    device: str = "auto",
    settings: PGDSettings | None = None,
    batch_size: int = 256,
    progress: ProgressCallback | None = None,
) -> EncryptedSplits:
    """Encrypt train with true labels and test with the base model's predicted labels.

    Released images are quantised to 16 bits (budget re-checked) as when they are written.
    """
    encryptor = Encryptor(base_model, key, device=device, settings=settings)
    total = len(train_images) + len(test_images)

    def tick(offset: int) -> Callable[[int], None]:
        def report(done: int) -> None:
            if progress is not None:
                progress(offset + done, total, "encrypting")

        return report

    train_labels = np.asarray(train_labels, dtype=np.int64)
    train_out, train_summary = _released(
        encryptor, train_images, train_labels, batch_size=batch_size, progress=tick(0)
    )
    test_pred = encryptor.predict(test_images)
    test_out, test_summary = _released(
        encryptor, test_images, test_pred, batch_size=batch_size, progress=tick(len(train_images))
    )
    return EncryptedSplits(
        train_images=train_out,
        test_images=test_out,
        test_encrypt_labels=test_pred,
        train_perceptual=train_summary,
        test_perceptual=test_summary,
    )


def _relabel(inner: ProgressCallback, prefix: str) -> ProgressCallback:
    def relabelled(done: int, total: int | None, what: str) -> None:
        inner(done, total, f"{prefix} {what}")

    return relabelled


def _summarise(
    arch: str,
    width: int,
    clean: Sequence[float],
    enc: Sequence[EpochRecord],
    *,
    reused: bool,
    original_test_recall: Sequence[float | None] = (),
) -> ArchitectureResult:
    enc_test = [r.metrics["encrypted_test"] for r in enc]
    orig_test = [r.metrics["original_test"] for r in enc]
    history = tuple(
        EpochScores(
            epoch=r.epoch,
            clean_baseline=clean[i] if i < len(clean) else None,
            encrypted_test=enc_test[i],
            original_test=orig_test[i],
        )
        for i, r in enumerate(enc)
    )
    clean_final = float(clean[-1])
    return ArchitectureResult(
        arch=arch,
        width=width,
        clean_final=clean_final,
        clean_peak=float(max(clean)),
        encrypted_test_final=float(enc_test[-1]),
        encrypted_test_peak=float(max(enc_test)),
        original_test_final=float(orig_test[-1]),
        original_test_peak=float(max(orig_test)),
        relative_final=float(enc_test[-1] / clean_final) if clean_final > 0 else float("nan"),
        history=history,
        baseline_reused_from_base_model=reused,
        original_test_recall=tuple(original_test_recall),
    )


def _checked_splits(
    archs: Sequence[str],
    train_images: np.ndarray,
    train_labels: Sequence[int] | np.ndarray,
    test_images: np.ndarray,
    test_labels: Sequence[int] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) as float32 / int64 arrays, after refusing an unknown
    architecture or an empty split (what every protection evaluation checks first)."""
    bad = [a for a in archs if a not in ARCHITECTURES]
    if bad:
        raise ConfigError(
            f"unknown architecture(s) {bad}; expected some of {ARCHITECTURES}", field="archs"
        )
    x_train = np.asarray(train_images, dtype=np.float32)
    x_test = np.asarray(test_images, dtype=np.float32)
    if len(x_train) == 0 or len(x_test) == 0:
        raise ConfigError(
            f"need non-empty training and test splits, got {len(x_train)} and {len(x_test)}"
        )
    y_train = np.asarray(train_labels, dtype=np.int64)
    y_test = np.asarray(test_labels, dtype=np.int64)
    return x_train, y_train, x_test, y_test


def _recall_per_class(
    truth: np.ndarray, predicted: np.ndarray, n_classes: int
) -> list[float | None]:
    """Recall of each class (``None`` for a class absent from ``truth``)."""
    from sklearn.metrics import recall_score  # here: keeps sklearn out of the job's imports

    recall = recall_score(
        truth, predicted, labels=list(range(n_classes)), average=None, zero_division=0.0
    )
    present = np.bincount(truth, minlength=n_classes) > 0
    return [float(v) if present[i] else None for i, v in enumerate(recall)]


def evaluate_protection(
    base_model: nn.Module,
    key: EncryptionKey,
    train_images: np.ndarray,
    train_labels: Sequence[int] | np.ndarray,
    test_images: np.ndarray,
    test_labels: Sequence[int] | np.ndarray,
    *,
    settings: ProtectionSettings | None = None,
    pgd: PGDSettings | None = None,
    device: str = "auto",
    dataset: str = "unnamed",
    base_clean_history: Sequence[float] | None = None,
    progress: ProgressCallback | None = None,
) -> ProtectionReport:
    """Run the paper's protection evaluation (see the module docstring) and return the report.

    Args:
        base_model: the classifier the encryption attacks (the key's class count must fit).
        key: the secret key (its combiner and targets are used; ``pgd`` overrides its PGD).
        train_images, train_labels: (N, H, W) float32 in [0, 1] and true labels.
        test_images, test_labels: held-out originals and their true labels.
        settings: architectures, width, training settings, seed.
        pgd: PGD settings (default: the key's).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dataset: a name for the report.
        base_clean_history: per-epoch original-test accuracy of ``base_model`` when it was
            trained exactly as ``settings`` would train a baseline of its architecture and
            width (same data, seed and optimiser settings); that baseline is then reused
            instead of being trained a second time.
        progress: ``progress(done, total, what)`` over encryption and all trained epochs.

    Raises:
        ConfigError: unknown architecture or an empty split.
        ModelError / EncryptionKeyError: key, model and data do not fit.
    """
    cfg = settings or ProtectionSettings()
    pgd_cfg = pgd or key.pgd
    dev = resolve_device(device)
    x_train, y_train, x_test, y_test = _checked_splits(
        cfg.archs, train_images, train_labels, test_images, test_labels
    )
    if x_train.shape[1:] != x_test.shape[1:] or x_train.ndim != 3:
        raise ModelError(
            f"expected (N, H, W) splits of one image size, got {x_train.shape} and {x_test.shape}"
        )
    t0 = time.perf_counter()
    epochs = cfg.train.epochs
    base_arch = str(getattr(base_model, "arch", "unknown"))
    base_width = getattr(base_model, "width", None)
    reuse = (
        base_clean_history is not None
        and base_arch in cfg.archs
        and base_width == cfg.width
        and len(base_clean_history) == epochs
    )
    n_trainings = 2 * len(cfg.archs) - (1 if reuse else 0)
    n_enc = len(x_train) + len(x_test)
    total = n_enc + n_trainings * epochs
    done_units = 0

    def report(done: int, _total: int | None, what: str) -> None:
        if progress is not None:
            progress(done_units + done, total, what)

    base_acc = evaluate_accuracy(base_model, x_test, y_test, device=dev)
    splits = encrypt_splits(
        base_model,
        key,
        x_train,
        y_train,
        x_test,
        device=dev,
        settings=pgd_cfg,
        batch_size=cfg.batch_size,
        progress=report,
    )
    done_units += n_enc
    logger.info(
        "encrypted %d + %d slices: mean PSNR %.2f / %.2f dB, target success %.2f / %.2f",
        len(x_train),
        len(x_test),
        splits.train_perceptual.psnr_mean,
        splits.test_perceptual.psnr_mean,
        splits.train_perceptual.target_success,
        splits.test_perceptual.target_success,
    )
    n_classes = len(key.class_names)
    enc_x_test = splits.test_images

    def clean_scores(epoch: int, m: nn.Module) -> dict[str, float]:
        return {"original_test": evaluate_accuracy(m, x_test, y_test, device=dev)}

    def enc_scores(epoch: int, m: nn.Module) -> dict[str, float]:
        return {
            "encrypted_test": evaluate_accuracy(m, enc_x_test, y_test, device=dev),
            "original_test": evaluate_accuracy(m, x_test, y_test, device=dev),
        }

    def fit(
        arch: str, images: np.ndarray, what: str, scores: EpochCallback
    ) -> tuple[nn.Module, list[EpochRecord]]:
        """A fresh ``arch`` (same init for clean and encrypted) trained on ``images``."""
        nonlocal done_units
        model = build_model(arch, n_classes, width=cfg.width, seed=cfg.seed)
        hist = train_model(
            model,
            images,
            y_train,
            seed=cfg.seed,
            settings=cfg.train,
            device=dev,
            progress=_relabel(report, f"{arch} {what}"),
            on_epoch=scores,
        )
        done_units += epochs
        return model, hist

    results = []
    for arch in cfg.archs:
        if reuse and arch == base_arch:
            assert base_clean_history is not None
            clean = [float(v) for v in base_clean_history]
        else:
            _, clean_hist = fit(arch, x_train, "clean", clean_scores)
            clean = [r.metrics["original_test"] for r in clean_hist]
        model, hist = fit(arch, splits.train_images, "encrypted", enc_scores)
        recall = _recall_per_class(y_test, predict(model, x_test, device=dev), n_classes)
        result = _summarise(
            arch,
            cfg.width,
            clean,
            hist,
            reused=reuse and arch == base_arch,
            original_test_recall=recall,
        )
        logger.info(
            "%s: clean %.3f, encrypted test %.3f, original test %.3f (peak %.3f)",
            arch,
            result.clean_final,
            result.encrypted_test_final,
            result.original_test_final,
            result.original_test_peak,
        )
        results.append(result)
    chance = float(np.bincount(y_test, minlength=n_classes).max() / len(y_test))
    return ProtectionReport(
        dataset=dataset,
        class_names=tuple(key.class_names),
        n_train=len(x_train),
        n_test=len(x_test),
        image_shape=(int(x_train.shape[1]), int(x_train.shape[2])),
        key_fingerprint=key.fingerprint,
        n_targets=tuple(len(t) for t in key.targets),
        pgd=pgd_cfg,
        settings=cfg,
        base_arch=base_arch,
        base_test_accuracy=base_acc,
        chance_accuracy=chance,
        train_perceptual=splits.train_perceptual,
        test_perceptual=splits.test_perceptual,
        results=tuple(results),
        seconds=time.perf_counter() - t0,
    )
