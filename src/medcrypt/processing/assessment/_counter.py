"""Counter-attack audit: the attacker preprocesses the released images before training.

A protection claim is only as good as the cheapest preprocessing that undoes it. Image
Shortcut Squeezing (2023) showed JPEG at quality 10 restores most of the accuracy that
published poisons remove, and an attacker who early-stops on labelled data of their own gets
the *peak* over epochs, not the final figure. So every counter-attack here trains a fresh
victim per architecture on the transformed release (true labels) and reports original-test
accuracy and balanced accuracy, final and peak, next to a clean-trained baseline.

The counter-attacks (:data:`DEFAULT_COUNTER_ATTACKS`):

- ``none``: the release as published (the protocol's own row);
- ``jpeg``: a Pillow JPEG round trip (8-bit, greyscale) at quality 10 / 30 / 75;
- ``blur``: Gaussian blur (``scipy.ndimage.gaussian_filter``, sigma in pixels, reflect edges);
- ``noise``: additive Gaussian noise (std in [0, 1] units), clipped to [0, 1];
- ``downup``: 2x area-averaging down-sampling, then bilinear up-sampling to the original size;
- ``adv_train``: adversarial training at the release's own budget (untargeted PGD on every
  batch, L2 or L-inf as the release);
- ``mix_clean``: a share of the released images replaced by their clean originals (the
  attacker holds some clean labelled data).

Only the training images are transformed; victims are scored on the untouched original test
set (what the attacker wants the model for).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from torch import nn

from medcrypt._types import ProgressCallback
from medcrypt.config import StrictModel
from medcrypt.errors import ConfigError
from medcrypt.processing.assessment._victims import VictimScores, train_victim
from medcrypt.processing.models._training import BatchHook, TrainSettings
from medcrypt.processing.protection._pgd import project_l2

__all__ = [
    "DEFAULT_COUNTER_ATTACKS",
    "CounterAttack",
    "CounterAttackAudit",
    "CounterAttackRow",
    "adversarial_hook",
    "apply_counter_attack",
    "audit_counter_attacks",
    "down_up",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg_round_trip",
    "mix_clean",
    "orthogonal_projection",
]

CounterKind = Literal["none", "jpeg", "blur", "noise", "downup", "adv_train", "mix_clean"]


class CounterAttack(StrictModel):
    """One preprocessing the attacker applies; ``value`` is its strength (see module doc).

    ``value``: JPEG quality, blur sigma (pixels), noise std, down-sampling factor, PGD steps
    of adversarial training, or the clean share for ``mix_clean``; unused for ``none``.
    """

    name: str
    kind: CounterKind
    value: float = 0.0


DEFAULT_COUNTER_ATTACKS: tuple[CounterAttack, ...] = (
    CounterAttack(name="none", kind="none"),
    CounterAttack(name="jpeg10", kind="jpeg", value=10),
    CounterAttack(name="jpeg30", kind="jpeg", value=30),
    CounterAttack(name="jpeg75", kind="jpeg", value=75),
    CounterAttack(name="blur1", kind="blur", value=1.0),
    CounterAttack(name="noise0.05", kind="noise", value=0.05),
    CounterAttack(name="downup2", kind="downup", value=2),
    CounterAttack(name="adv_train", kind="adv_train", value=3),
    CounterAttack(name="mix_clean20", kind="mix_clean", value=0.2),
)


def _check(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ConfigError(f"expected images shaped (N, H, W), got {x.shape}")
    return x


def jpeg_round_trip(images: np.ndarray, quality: int) -> np.ndarray:
    """Each image to 8 bits, through Pillow's JPEG encoder at ``quality`` and back, in [0, 1]."""
    x = _check(images)
    if not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be in 1..100, got {quality}", field="quality")
    out = np.empty_like(x)
    for i, img in enumerate(x):
        u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return out


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each image (scipy's ``gaussian_filter``, reflect edges, 4-sigma kernel)."""
    from scipy.ndimage import gaussian_filter

    x = _check(images)
    if sigma <= 0:
        raise ConfigError(f"blur sigma must be positive, got {sigma}", field="sigma")
    return np.stack([gaussian_filter(img, sigma=sigma, mode="reflect") for img in x]).astype(
        np.float32
    )


def gaussian_noise(images: np.ndarray, std: float, *, seed: int = 0) -> np.ndarray:
    """Add N(0, std^2) noise to every pixel (seeded) and clip to [0, 1]."""
    x = _check(images)
    if std < 0:
        raise ConfigError(f"noise std must be >= 0, got {std}", field="std")
    noise = np.random.default_rng(seed).normal(0.0, std, size=x.shape)
    return np.clip(x + noise, 0.0, 1.0).astype(np.float32)


def down_up(images: np.ndarray, factor: int = 2) -> np.ndarray:
    """``factor``x area-averaging down-sampling, then bilinear up-sampling back to (H, W).

    Sides must be multiples of ``factor`` (the mean over each factor x factor block is exact).
    """
    x = _check(images)
    n, h, w = x.shape
    if factor < 2 or h % factor or w % factor:
        raise ConfigError(
            f"down/up-sampling needs a factor >= 2 dividing the image sides, got {factor} for "
            f"{h}x{w}",
            field="factor",
        )
    small = x.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
    up = nn.functional.interpolate(
        torch.from_numpy(small).unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False
    )
    return up[:, 0].numpy().astype(np.float32)


def orthogonal_projection(
    released: np.ndarray, labels: Sequence[int] | np.ndarray, *, n_classes: int
) -> np.ndarray:
    """Sandoval-Segura et al. 2023 ("What can we learn from unlearnable datasets?"): fit a
    linear classifier (scikit-learn's multinomial logistic regression) on the released
    pixels, then remove from every image its component in the span of the learned class
    weights. Class-wise additive noise lives mostly in that span; what is left is trained on.

    Returns (N, H, W) float32 images (no longer clipped to [0, 1]: the victims normalise).
    """
    from sklearn.linear_model import LogisticRegression

    x = _check(released)
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(x),):
        raise ConfigError(f"expected {len(x)} labels, got shape {y.shape}")
    flat = x.reshape(len(x), -1).astype(np.float64)
    mean = flat.mean(axis=0)
    probe = LogisticRegression(max_iter=300, C=1.0).fit(flat - mean, y)
    w = probe.coef_ if n_classes > 2 else np.vstack([probe.coef_, -probe.coef_])
    q, _ = np.linalg.qr(w.T)  # (D, C) orthonormal basis of the weights' span
    out = flat - (flat @ q) @ q.T
    return out.reshape(x.shape).astype(np.float32)


def mix_clean(
    released: np.ndarray, clean: np.ndarray, share: float, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Replace a random ``share`` of the released images by their clean originals.

    Returns the mixed set and the indices that were replaced.
    """
    r, c = _check(released), _check(clean)
    if r.shape != c.shape:
        raise ConfigError(f"released {r.shape} and clean {c.shape} images differ in shape")
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"clean share must be in [0, 1], got {share}", field="share")
    idx = np.sort(
        np.random.default_rng(seed).choice(len(r), size=round(share * len(r)), replace=False)
    )
    out = r.copy()
    out[idx] = c[idx]
    return out, idx


def adversarial_hook(
    eps: float, *, norm: Literal["l2", "linf"] = "l2", steps: int = 3
) -> BatchHook:
    """A :data:`BatchHook` replacing each batch by untargeted PGD examples within ``eps``.

    Step length 2.5 * eps / steps (Madry et al.), no random start; the attack runs with the
    model in eval mode (batch-norm running statistics, no update of them) and leaves it in
    the mode it found.
    """
    if eps <= 0 or steps < 1:
        raise ConfigError(f"adversarial training needs eps > 0 and steps >= 1, got {eps}, {steps}")
    alpha = 2.5 * eps / steps
    loss_fn = nn.CrossEntropyLoss()

    def hook(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        was = model.training
        model.eval()
        delta = torch.zeros_like(x, requires_grad=True)
        try:
            for _ in range(steps):
                (grad,) = torch.autograd.grad(loss_fn(model(x + delta), y), delta)
                with torch.no_grad():
                    if norm == "l2":
                        g = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                        delta += alpha * grad / g
                        delta.copy_(project_l2(delta, eps))
                    else:
                        delta += alpha * grad.sign()
                        delta.clamp_(-eps, eps)
                    delta.copy_((x + delta).clamp(0.0, 1.0) - x)
        finally:
            model.train(was)
        return (x + delta).detach()

    return hook


def apply_counter_attack(
    attack: CounterAttack,
    released: np.ndarray,
    *,
    clean: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The attacker's training images after ``attack`` (``adv_train`` acts in training)."""
    k = attack.kind
    if k in ("none", "adv_train"):
        return _check(released)
    if k == "jpeg":
        return jpeg_round_trip(released, int(attack.value))
    if k == "blur":
        return gaussian_blur(released, attack.value)
    if k == "noise":
        return gaussian_noise(released, attack.value, seed=seed)
    if k == "downup":
        return down_up(released, int(attack.value))
    if clean is None:
        raise ConfigError(f"counter-attack {attack.name!r} needs the clean originals")
    return mix_clean(released, clean, attack.value, seed=seed)[0]


class CounterAttackRow(StrictModel):
    """One counter-attack: a victim per architecture, scored on the original test set."""

    attack: CounterAttack
    victims: tuple[VictimScores, ...]


class CounterAttackAudit(StrictModel):
    """Result of :func:`audit_counter_attacks` (JSON via ``model_dump_json``)."""

    format: str = "medcrypt-counter-attack-audit"
    version: int = 1
    n_train: int
    n_test: int
    eps: float
    norm: str
    train: TrainSettings
    seed: int
    #: victims trained on the clean originals (absent when no originals were given).
    clean: tuple[VictimScores, ...] = ()
    rows: tuple[CounterAttackRow, ...] = Field(default=())

    def to_markdown(self, test_set: str = "original_test") -> str:
        """One line per counter-attack and architecture: accuracy and balanced, final / peak."""
        pct = _pct
        clean = {v.arch: v.scores[test_set] for v in self.clean}
        lines = [
            f"Counter-attacks: {self.n_train} released training / {self.n_test} original test "
            f"images; release budget {self.norm} {self.eps:g}; victims trained "
            f"{self.train.epochs} epochs (shift {self.train.shift}), seed {self.seed}.",
            "",
            "| Counter-attack | Victim | Orig test acc (final / peak) "
            "| Balanced (final / peak) | Balanced peak / clean |",
            "|---|---|---|---|---|",
        ]
        for arch, s in clean.items():
            lines.append(
                f"| clean-trained baseline | {arch} | {pct(s.acc_final)} / {pct(s.acc_peak)} "
                f"| {pct(s.bacc_final)} / {pct(s.bacc_peak)} | 1.00 |"
            )
        for row in self.rows:
            for v in row.victims:
                s = v.scores[test_set]
                ratio = s.bacc_peak / clean[v.arch].bacc_peak if v.arch in clean else math.nan
                lines.append(
                    f"| {row.attack.name} | {v.arch} | {pct(s.acc_final)} / {pct(s.acc_peak)} "
                    f"| {pct(s.bacc_final)} / {pct(s.bacc_peak)} | {ratio:.2f} |"
                )
        return "\n".join(lines) + "\n"


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:.1f}%"


def audit_counter_attacks(
    released: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    test_images: np.ndarray,
    test_labels: Sequence[int] | np.ndarray,
    *,
    eps: float,
    norm: Literal["l2", "linf"] = "l2",
    n_classes: int | None = None,
    clean: np.ndarray | None = None,
    attacks: Sequence[CounterAttack] = DEFAULT_COUNTER_ATTACKS,
    archs: Sequence[str] = ("resnet18", "vgg11"),
    width: int = 8,
    train: TrainSettings | None = None,
    seed: int = 0,
    device: str = "cpu",
    clean_baselines: Sequence[VictimScores] | None = None,
    extra_tests: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    progress: ProgressCallback | None = None,
    on_row: Callable[[CounterAttackRow], None] | None = None,
) -> CounterAttackAudit:
    """Train one victim per architecture per counter-attack; score on the original test set.

    Args:
        released, labels: the released training images (as published) and their true labels.
        test_images, test_labels: original test images (never transformed).
        eps, norm: the release's budget (the adversarial-training counter-attack uses it).
        clean: the clean originals of ``released`` (for ``mix_clean`` and, unless
            ``clean_baselines`` is given, for a clean-trained baseline per architecture).
        attacks: the counter-attacks (default :data:`DEFAULT_COUNTER_ATTACKS`).
        archs, width, train, seed: the victims (same seed for every counter-attack).
        clean_baselines: already trained clean victims to report instead of training them.
        extra_tests: more named test sets to score (e.g. the encrypted test set).
        on_row: called with each finished row (e.g. to write partial results).

    Raises:
        ConfigError: mismatched shapes, or ``mix_clean`` without ``clean``.
    """
    x = _check(released)
    y = np.asarray(labels, dtype=np.int64)
    x_test = _check(test_images)
    y_test = np.asarray(test_labels, dtype=np.int64)
    if len(x) != len(y) or len(x_test) != len(y_test) or x.shape[1:] != x_test.shape[1:]:
        raise ConfigError(
            f"released {x.shape} / {y.shape} and test {x_test.shape} / {y_test.shape} do not fit"
        )
    if clean is not None and _check(clean).shape != x.shape:
        raise ConfigError(f"clean originals {np.shape(clean)} differ from released {x.shape}")
    k = n_classes or int(max(y.max(), y_test.max()) + 1)
    cfg = train or TrainSettings()
    tests = {"original_test": (x_test, y_test), **(extra_tests or {})}
    total = len(archs) * (len(attacks) + (clean is not None and clean_baselines is None))
    done = 0

    def fit(images: np.ndarray, arch: str, what: str, hook: BatchHook | None) -> VictimScores:
        nonlocal done
        v = train_victim(
            arch,
            images,
            y,
            tests,
            n_classes=k,
            width=width,
            settings=cfg,
            seed=seed,
            device=device,
            batch_hook=hook,
        )
        done += 1
        if progress is not None:
            progress(done, total, f"{what} {arch}")
        return v

    if clean_baselines is not None:
        baselines = tuple(clean_baselines)
    elif clean is not None:
        baselines = tuple(fit(_check(clean), a, "clean", None) for a in archs)
    else:
        baselines = ()
    rows = []
    for attack in attacks:
        images = apply_counter_attack(attack, x, clean=clean, seed=seed)
        hook = (
            adversarial_hook(eps, norm=norm, steps=int(attack.value))
            if attack.kind == "adv_train"
            else None
        )
        row = CounterAttackRow(
            attack=attack, victims=tuple(fit(images, a, attack.name, hook) for a in archs)
        )
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return CounterAttackAudit(
        n_train=len(x),
        n_test=len(x_test),
        eps=eps,
        norm=norm,
        train=cfg,
        seed=seed,
        clean=baselines,
        rows=tuple(rows),
    )
