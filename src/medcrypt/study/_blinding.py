"""Blinding check: can simple pixel statistics tell the two versions in the packets apart?

A counterbalanced reader study is blind only if a reader cannot tell which version of a case
an image is. File names, sizes and times are already blind (see :mod:`._create`); the pixels
may not be: a perturbation that fills the black background leaves far fewer exactly-black
pixels in protected slices than in originals. ``study create`` therefore measures, on the very
images it puts in packets (after padding and 16-bit rounding):

- per-image features: the share of exactly-black pixels (16-bit level 0, and 8-bit level 0 as
  a screen or a PDF page shows it), the mean and standard deviation of intensity, the entropy
  of the 64-bin intensity histogram, and the image histogram's total-variation distance to the
  mean histogram of all packet images (computed without the labels);
- for each feature, the AUC of telling protected from original by that feature alone
  (``sklearn.metrics.roc_auc_score``), reported as the larger of AUC and 1 - AUC because a
  reader may learn either direction;
- the total-variation distance between the pooled histograms of the two versions;
- a logistic model on all features (standardised; ``sklearn`` pipeline), cross-validated by
  case (``GroupKFold``: both versions of a case are always in the same fold), and the AUC of
  its out-of-fold probabilities.

The versions *separate* when any of these AUCs exceeds 0.6; ``study create`` then warns on
stderr and writes the figures into the study's ``README.md`` for the ethics file. With few
cases an AUC has a wide sampling spread (about ``sqrt((2n + 1) / (12 n^2))`` for n cases per
version under no difference, 0.065 at n = 20), so a value just above 0.6 on a small study is a
prompt to look, not proof.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medcrypt.config import StrictModel

__all__ = ["BLINDING_AUC_LIMIT", "BlindingCheck", "FeatureSeparation", "check_blinding"]

#: the AUC above which the versions count as separable.
BLINDING_AUC_LIMIT = 0.6
_BINS = 64
_MIN_CASES_FOR_MODEL = 4

_FEATURES = {
    "black_share": "share of exactly-black pixels (16-bit level 0)",
    "black_share_8bit": "share of black pixels at 8 bits (screen / PDF level 0)",
    "mean": "mean intensity",
    "std": "standard deviation of intensity",
    "entropy": "entropy of the 64-bin intensity histogram (bits)",
    "histogram_distance": "total-variation distance of the histogram to the mean histogram",
}


class FeatureSeparation(StrictModel):
    """How well one feature alone tells protected from original images."""

    name: str
    description: str
    original_min: float
    original_max: float
    protected_min: float
    protected_max: float
    #: P(feature of a protected image > that of an original), ties counted half
    auc: float
    #: max(auc, 1 - auc): the reader may learn either direction
    separability: float


class BlindingCheck(StrictModel):
    """The separability figures of one study's packet images."""

    n_cases: int
    features: tuple[FeatureSeparation, ...]
    #: total-variation distance between the pooled histograms of the two versions (0..1)
    histogram_distance: float
    #: cross-validated (by case) AUC of a logistic model on all features; None if too few cases
    logistic_auc: float | None
    logistic_folds: int
    limit: float = BLINDING_AUC_LIMIT
    separable: bool

    def worst(self) -> float:
        """The largest AUC of any single feature or of the logistic model."""
        values = [f.separability for f in self.features]
        if self.logistic_auc is not None:
            values.append(self.logistic_auc)
        return max(values)

    def summary(self) -> str:
        """One paragraph for stderr and the README."""
        black = next(f for f in self.features if f.name == "black_share")
        model = (
            f"a logistic model on {len(self.features)} such features, cross-validated by case "
            f"over {self.logistic_folds} folds, has AUC {self.logistic_auc:.2f}"
            if self.logistic_auc is not None
            else "too few cases for the cross-validated logistic model"
        )
        head = (
            f"BLINDING WARNING: the protected and original images in the packets can be told "
            f"apart by simple pixel statistics (AUC > {self.limit:g}), so a reader may know "
            f"which version they read. "
            if self.separable
            else f"Blinding check passed: no pixel statistic separates the versions "
            f"(every AUC <= {self.limit:g}). "
        )
        return (
            head + f"Black-pixel share: AUC {black.separability:.2f} (originals "
            f"{black.original_min:.2f}-{black.original_max:.2f}, protected "
            f"{black.protected_min:.2f}-{black.protected_max:.2f}); {model}; "
            f"histogram distance between the versions {self.histogram_distance:.3f}."
        )


def _levels(image01: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image01, 0.0, 1.0) * 65535.0).astype(np.int64)


def _features(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n, n_features) feature matrix and (n, _BINS) normalised histograms."""
    hists = []
    rows = []
    for img in images:
        lv = _levels(img)
        x = lv / 65535.0
        h = np.bincount(((lv * _BINS) // 65536).ravel(), minlength=_BINS).astype(np.float64)
        h /= h.sum()
        nz = h[h > 0]
        hists.append(h)
        rows.append(
            [
                float(np.mean(lv == 0)),
                float(np.mean(np.rint(x * 255.0) == 0)),
                float(x.mean()),
                float(x.std()),
                float(-(nz * np.log2(nz)).sum()),
            ]
        )
    hist = np.asarray(hists)
    mean_hist = hist.mean(axis=0)
    tv = 0.5 * np.abs(hist - mean_hist).sum(axis=1)
    return np.column_stack([np.asarray(rows), tv]), hist


def check_blinding(versions: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> BlindingCheck:
    """Separability of ``case_id -> (original, protected)`` packet images (float [0, 1])."""
    # sklearn (seconds to import) only when a study is created: not by `study serve`
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cases = sorted(versions)
    images = [versions[c][v] for c in cases for v in (0, 1)]
    labels = np.tile([0, 1], len(cases))
    groups = np.repeat(np.arange(len(cases)), 2)
    feats, hist = _features(images)
    out: list[FeatureSeparation] = []
    for j, (name, description) in enumerate(_FEATURES.items()):
        col = feats[:, j]
        orig, prot = col[labels == 0], col[labels == 1]
        auc = float(roc_auc_score(labels, col)) if len(cases) else 0.5
        out.append(
            FeatureSeparation(
                name=name,
                description=description,
                original_min=float(orig.min()),
                original_max=float(orig.max()),
                protected_min=float(prot.min()),
                protected_max=float(prot.max()),
                auc=auc,
                separability=max(auc, 1.0 - auc),
            )
        )
    pooled_tv = float(0.5 * np.abs(hist[labels == 0].mean(0) - hist[labels == 1].mean(0)).sum())
    logistic: float | None = None
    folds = 0
    if len(cases) >= _MIN_CASES_FOR_MODEL:
        folds = min(5, len(cases))
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        proba = cross_val_predict(
            model, feats, labels, groups=groups, cv=GroupKFold(n_splits=folds),
            method="predict_proba",
        )[:, 1]  # fmt: skip
        logistic = float(roc_auc_score(labels, proba))
    check = BlindingCheck(
        n_cases=len(cases),
        features=tuple(out),
        histogram_distance=pooled_tv,
        logistic_auc=logistic,
        logistic_folds=folds,
        separable=False,
    )
    return check.model_copy(update={"separable": check.worst() > BLINDING_AUC_LIMIT})


def blinding_markdown(check: BlindingCheck) -> str:
    """The figures as a Markdown section for the study's README (the ethics file)."""
    lines = [
        "## Blinding check (pixel statistics of the packet images)",
        "",
        check.summary(),
        "",
        f"{check.n_cases} cases, one original and one protected packet image each, measured "
        "after padding and 16-bit rounding exactly as printed. AUC: how well the feature alone "
        "tells a protected from an original image (0.5 = not at all, 1.0 = perfectly; the larger "
        f"of AUC and 1 - AUC is shown). Separable when any AUC > {check.limit:g}.",
        "",
        "| feature | originals (min-max) | protected (min-max) | AUC |",
        "|---|---|---|---|",
    ]
    for f in check.features:
        lines.append(
            f"| {f.description} | {f.original_min:.3f}-{f.original_max:.3f} | "
            f"{f.protected_min:.3f}-{f.protected_max:.3f} | {f.separability:.2f} |"
        )
    model = (
        f"{check.logistic_auc:.2f} ({check.logistic_folds}-fold, split by case)"
        if check.logistic_auc is not None
        else f"not computed (fewer than {_MIN_CASES_FOR_MODEL} cases)"
    )
    lines += [
        f"| logistic model on all of the above, cross-validated | | | {model} |",
        "",
        f"Histogram distance (total variation) between the pooled histograms of the two "
        f"versions: {check.histogram_distance:.3f} (0 = identical, 1 = disjoint).",
        "",
    ]
    return "\n".join(lines)
