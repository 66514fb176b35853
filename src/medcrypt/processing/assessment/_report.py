"""What the protection evaluation is told and what it reports (paper Section 5, Table 12).

:class:`ProtectionSettings` in; :class:`ProtectionReport` out (JSON via ``model_dump_json``,
Markdown via :meth:`ProtectionReport.to_markdown`), with one :class:`ArchitectureResult` per
evaluated architecture and a :class:`PerceptualSummary` per split. The protocol that fills
it is in ``_evaluation``.
"""

from __future__ import annotations

import math

from pydantic import Field

from medcrypt.config import StrictModel
from medcrypt.processing.models._training import TrainSettings
from medcrypt.processing.protection._settings import PGDSettings

__all__ = [
    "ArchitectureResult",
    "EpochScores",
    "PerceptualSummary",
    "ProtectionReport",
    "ProtectionSettings",
]


class ProtectionSettings(StrictModel):
    """How the protection evaluation trains its models.

    Attributes:
        archs: architectures trained on the encrypted data (>= 2 for a report).
        width: width of every trained model (64 = standard networks).
        train: optimiser settings shared by all models (baseline and encrypted alike).
        seed: seed of every model's initialisation and training.
        batch_size: PGD rows per encryption batch (memory bound, not a result parameter).
        base_width: width of the base model when the evaluation trains one (``None``: same
            as ``width``). The base model is the data owner's classifier, whose gradients
            write the encryption; the evaluated models are the attacker's. They need not be
            the same size, and a stronger base model plants stronger features.
        base_epochs: training epochs of that base model (``None``: ``train.epochs``).
    """

    archs: tuple[str, ...] = Field(default=("resnet18", "vgg11"), min_length=1)
    width: int = Field(default=8, ge=1)
    train: TrainSettings = Field(default_factory=TrainSettings)
    seed: int = 0
    batch_size: int = Field(default=256, ge=1)
    base_width: int | None = Field(default=None, ge=1)
    base_epochs: int | None = Field(default=None, ge=1)

    @property
    def base_model_width(self) -> int:
        """Width of a base model trained by the evaluation."""
        return self.width if self.base_width is None else self.base_width

    @property
    def base_train(self) -> TrainSettings:
        """Training settings of a base model trained by the evaluation."""
        if self.base_epochs is None:
            return self.train
        return self.train.model_copy(update={"epochs": self.base_epochs})


class EpochScores(StrictModel):
    """Accuracies after one epoch (None where a model was not trained)."""

    epoch: int
    clean_baseline: float | None
    encrypted_test: float
    original_test: float


class ArchitectureResult(StrictModel):
    """Table-12 row for one architecture, with the clean baseline next to it."""

    arch: str
    width: int
    clean_final: float
    clean_peak: float
    encrypted_test_final: float
    encrypted_test_peak: float
    original_test_final: float
    original_test_peak: float
    #: encrypted-test accuracy as a fraction of clean accuracy (final epochs).
    relative_final: float
    history: tuple[EpochScores, ...]
    baseline_reused_from_base_model: bool = False
    #: per-class recall on the original test set, final epoch, in class order: which
    #: classes the encryption protects (a protected class scores low). Only the diagonal is
    #: kept: the off-diagonal confusion would show the key's correspondence.
    original_test_recall: tuple[float | None, ...] = ()
    #: balanced accuracy (mean per-class recall) on the original test set, final and best
    #: epoch; set by the mode unlearnable evaluation (``None`` in paper-protocol reports)
    original_test_balanced_final: float | None = None
    original_test_balanced_peak: float | None = None


class PerceptualSummary(StrictModel):
    """How far the released images are from the originals (per split)."""

    n: int
    psnr_mean: float
    psnr_min: float
    ssim_mean: float
    ssim_min: float
    l2_mean: float
    l2_max: float
    linf_mean: float
    linf_max: float
    target_success: float


class ProtectionReport(StrictModel):
    """The protection report: JSON via ``model_dump_json``, Markdown via :meth:`to_markdown`."""

    format: str = "medcrypt-protection-report"
    version: int = 1
    dataset: str
    class_names: tuple[str, ...]
    n_train: int
    n_test: int
    image_shape: tuple[int, int]
    #: the key as ``processing._release`` allows: fingerprint, targets per class (how many,
    #: not which), PGD settings; never its combiner, parameters or mapping
    key_fingerprint: str
    n_targets: tuple[int, ...]
    pgd: PGDSettings
    settings: ProtectionSettings
    base_arch: str
    base_test_accuracy: float
    #: share of the most frequent test class (what always guessing it scores).
    chance_accuracy: float
    train_perceptual: PerceptualSummary
    test_perceptual: PerceptualSummary
    results: tuple[ArchitectureResult, ...]
    seconds: float

    def passes(
        self,
        *,
        min_psnr: float = 35.0,
        min_relative: float = 0.9,
        max_original: float = 0.4,
        peak: bool = False,
        min_clean_margin: float = 0.2,
    ) -> bool:
        """The issue's bar: mean PSNR, encrypted-test vs clean, original-test ceiling.

        ``peak=True`` judges the original-test accuracy by its best epoch (stricter). A run
        whose clean baselines do not beat chance by ``min_clean_margin`` proves nothing and
        fails.
        """
        mean_psnr = min(self.train_perceptual.psnr_mean, self.test_perceptual.psnr_mean)
        if mean_psnr < min_psnr or not self.results:
            return False
        for r in self.results:
            orig = r.original_test_peak if peak else r.original_test_final
            if r.clean_final < self.chance_accuracy + min_clean_margin:
                return False
            if r.relative_final < min_relative or orig > max_original:
                return False
        return True

    def _recipe_text(self) -> str:
        """The victims' augmentation, where they had any (the thief's recipe, issue 23)."""
        t = self.settings.train
        views = [
            *(["flips"] if t.flip else []),
            *([f"rotations up to {t.rotate:g} deg"] if t.rotate > 0 else []),
            *([f"crops of {t.crop_scale:g}-1 of the area"] if t.crop_scale < 1 else []),
            *([f"mixup {t.mixup:g}"] if t.mixup > 0 else []),
            *([f"shifts of {t.shift} px"] if t.shift > 0 else []),
        ]
        return f"augmented by {', '.join(views)}, {t.schedule} schedule; " if views else ""

    def verdict(self) -> tuple[bool, str]:
        """(passes, the bar it was judged by, in words), for the report's own mode.

        Mode ``unlearnable`` is judged by issue 23's aim: every victim's *peak* original-test
        balanced accuracy at most 50% (an attacker may early-stop), the release still
        learnable on itself (encrypted-test at least 90% of clean, final epochs), mean PSNR
        at least 35 dB, clean baselines beating chance by 20 points. The other modes by
        :meth:`passes` (the paper's bar).
        """
        if self.pgd.mode != "unlearnable":
            ok = self.passes()
            bar = (
                "mean PSNR >= 35 dB, encrypted-test >= 90% of clean, original-test <= 40%, "
                "final epochs"
            )
        else:
            bar = (
                "peak original-test balanced accuracy <= 50%, release learnable on itself "
                "(encrypted-test >= 90% of clean), mean PSNR >= 35 dB"
            )
            mean_psnr = min(self.train_perceptual.psnr_mean, self.test_perceptual.psnr_mean)
            ok = mean_psnr >= 35.0 and bool(self.results)
            for r in self.results:
                peak = r.original_test_balanced_peak
                ok = ok and r.clean_final >= self.chance_accuracy + 0.2
                ok = ok and r.relative_final >= 0.9
                ok = ok and (r.original_test_peak if peak is None else peak) <= 0.5
        return ok, f"mode {self.pgd.mode}: {'meets' if ok else 'does NOT meet'} the bar ({bar})"

    def to_markdown(self) -> str:
        """A Markdown table in the shape of the paper's Table 12, plus the perceptual metrics."""
        pct = _pct
        base_width = (
            "" if self.settings.base_width is None else f" width {self.settings.base_width}"
        )
        lines = [
            f"### Protection report ({self.dataset})",
            "",
            f"{len(self.class_names)} classes (chance {pct(self.chance_accuracy)}), "
            f"{self.n_train} training / {self.n_test} test slices of "
            f"{self.image_shape[0]}x{self.image_shape[1]}; key `{self.key_fingerprint}` "
            f"({'/'.join(str(n) for n in sorted(set(self.n_targets)))} targets per class); "
            f"PGD eps {self.pgd.eps:g}, step {self.pgd.step:g}, "
            f"{self.pgd.iters} iterations{self._cap_text()}; mode {self.pgd.mode}; "
            f"{'surrogate' if self.pgd.mode == 'unlearnable' else 'base model'} "
            f"{self.base_arch}{base_width} "
            f"(test accuracy {pct(self.base_test_accuracy)}); "
            f"{self.settings.train.epochs} epochs, width {self.settings.width}, "
            f"{self._recipe_text()}seed {self.settings.seed}; {self.seconds:.0f} s.",
            "",
            "| Architecture | Clean test (final / peak) | Enc test (final / peak) "
            "| Orig test (final / peak) | Enc / clean |",
            "|---|---|---|---|---|",
        ]
        for r in self.results:
            lines.append(
                f"| {r.arch} | {pct(r.clean_final)} / {pct(r.clean_peak)} "
                f"| {pct(r.encrypted_test_final)} / {pct(r.encrypted_test_peak)} "
                f"| {pct(r.original_test_final)} / {pct(r.original_test_peak)} "
                f"| {r.relative_final:.2f} |"
            )
        balanced = [r for r in self.results if r.original_test_balanced_peak is not None]
        if balanced:
            lines += ["", "Original-test balanced accuracy (final / peak):", ""]
            lines += [
                f"- {r.arch}: {pct(r.original_test_balanced_final)} / "
                f"{pct(r.original_test_balanced_peak)}"
                for r in balanced
            ]
        with_recall = [r for r in self.results if r.original_test_recall]
        if with_recall:
            lines += [
                "",
                "Original-test recall per class, final epoch (low = protected):",
                "",
                "| Architecture | " + " | ".join(self.class_names) + " |",
                "|---|" + "---|" * len(self.class_names),
            ]
            for r in with_recall:
                cells = " | ".join("n/a" if v is None else pct(v) for v in r.original_test_recall)
                lines.append(f"| {r.arch} | {cells} |")
        lines += [
            "",
            "| Split | PSNR mean / min (dB) | SSIM mean / min | L2 mean / max | "
            "L-inf mean / max | Target success |",
            "|---|---|---|---|---|---|",
        ]
        for name, p in (("train", self.train_perceptual), ("test", self.test_perceptual)):
            lines.append(
                f"| {name} | {p.psnr_mean:.2f} / {p.psnr_min:.2f} | {p.ssim_mean:.4f} / "
                f"{p.ssim_min:.4f} | {p.l2_mean:.3f} / {p.l2_max:.3f} | {p.linf_mean:.3f} / "
                f"{p.linf_max:.3f} | {pct(p.target_success)} |"
            )
        return "\n".join(lines) + "\n"

    def _cap_text(self) -> str:
        cap = self.pgd.linf_cap
        return "" if cap is None else f", per-pixel cap {cap:.4g} ({255 * cap:.3g}/255)"


def _pct(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.1f}%"
