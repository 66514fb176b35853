"""The releases that ``protection_unlearnable.py`` compares: one function per row.

Each returns ``(train_release, test_release, info)`` for the figshare-btd train and test
splits: float32 (N, H, W) in [0, 1]. The test release is what the same mode makes of the test
split with its true labels (the hospital labels its cases): a victim trained on the train
release is scored on it for the *release-on-itself* check, and on the clean test split for
protection. Every crafting uses the product's code (``craft_surrogate``, the
``Encryptor``), except the class-wise variant, which is a benchmark-only lever.

Imported as ``from _unlearnable_rows import ...`` (benchmarks run as scripts).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medcrypt.processing import (
    EncryptionKey,
    Encryptor,
    PGDSettings,
    TrainSettings,
    foreground_masks,
    project,
)
from medcrypt.processing.assessment._victims import fit_victim
from medcrypt.processing.protection._augment import augment, draw_augmentation
from medcrypt.processing.protection._unlearnable import MinMinSettings, craft_surrogate

ROWS = (
    "clean",
    "ue",
    "ue_sem",
    "ue_rem",
    "ue_wide",
    "ue_full",
    "ue_classwise",
    "ue_ensemble",
    "targeted",
    "ue+targeted",
)


@dataclass
class Spec:
    """What every row of one invocation shares."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    eps: float
    seed: int
    device: str
    sample: float  # share of the train split the surrogate is crafted on (row ue)
    minmin: MinMinSettings
    noise_iters: int
    craft_archs: tuple[str, ...]
    base_epochs: int
    shift: int
    linf_cap: float | None = None  # per-pixel cap beside eps (issue 23), None = none


def eps_for_psnr(images: np.ndarray, psnr_fg: float) -> float:
    """The L2 eps whose full use gives ``psnr_fg`` mean foreground PSNR on these images.

    A noise that spends its whole L2 budget eps on the n foreground pixels of an image has
    MSE eps^2 / n there; the mean PSNR over images is ``mean(10 log10(n_i)) - 20 log10 eps``.
    """
    n = foreground_masks(images).reshape(len(images), -1).sum(axis=1).clip(min=1)
    return float(10 ** ((np.mean(10 * np.log10(n)) - psnr_fg) / 20))


def _settings(spec: Spec, **extra: Any) -> PGDSettings:
    fields: dict[str, Any] = {
        "mode": "unlearnable",
        "eps": spec.eps,
        "iters": spec.noise_iters,
        "step": 2.5 * spec.eps / spec.noise_iters,
        "foreground": True,
    }
    if spec.linf_cap is not None:
        fields["linf_cap"] = spec.linf_cap
    fields.update(extra)
    return PGDSettings(**fields)


def _secret(seed: int) -> str:
    return hashlib.sha256(f"protection_unlearnable {seed}".encode()).hexdigest()


def _encrypt(enc: Encryptor, x: np.ndarray, y: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [enc.encrypt(x[i : i + batch], y[i : i + batch]).images for i in range(0, len(x), batch)]
    return np.concatenate(out)


def _surrogate(spec: Spec, x: np.ndarray, y: np.ndarray, archs: tuple[str, ...]) -> Any:
    mm = spec.minmin.model_copy(update={"archs": archs})
    t0 = time.monotonic()
    res = craft_surrogate(
        x,
        y,
        n_classes=spec.n_classes,
        settings=_settings(spec),
        minmin=mm,
        masks=foreground_masks(x),
        seed=spec.seed,
        device=spec.device,
    )
    info = {"rounds": res.rounds, "accuracy": res.accuracy, "seconds": time.monotonic() - t0}
    print(
        f"  min-min on {len(x)} slices, {archs}: {info['rounds']} rounds, "
        f"accuracy {res.accuracy[-1]:.3f}, {info['seconds']:.0f} s",
        flush=True,
    )
    return res, info


def _per_case(spec: Spec, models: list[nn.Module], **extra: Any) -> Encryptor:
    key = EncryptionKey.generate(
        [str(c) for c in range(spec.n_classes)],
        combiner="none",
        seed=spec.seed,
        pgd=_settings(spec, **extra),
        secret=_secret(spec.seed),
    )
    return Encryptor(models[0], key, device=spec.device, ensemble=models[1:])


def row_ue(spec: Spec, archs: tuple[str, ...] | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """The product's way: min-min on a sample, then every slice on its own."""
    rng = np.random.default_rng(spec.seed)
    n = len(spec.x_train)
    idx = np.sort(rng.choice(n, size=max(spec.n_classes * 4, int(spec.sample * n)), replace=False))
    res, info = _surrogate(spec, spec.x_train[idx], spec.y_train[idx], archs or spec.craft_archs)
    enc = _per_case(spec, list(res.models))
    train = _encrypt(enc, spec.x_train, spec.y_train)
    test = _encrypt(enc, spec.x_test, spec.y_test)
    return train, test, {"minmin": info, "sample": len(idx)}


def row_ue_full(spec: Spec) -> tuple[Any, Any, dict[str, Any]]:
    """Huang et al. as published: min-min over the whole train split; the test split per case."""
    res, info = _surrogate(spec, spec.x_train, spec.y_train, spec.craft_archs)
    train = np.clip(spec.x_train + res.deltas, 0.0, 1.0).astype(np.float32)
    test = _encrypt(_per_case(spec, list(res.models)), spec.x_test, spec.y_test)
    return train, test, {"minmin": info}


def _classwise_noise(
    spec: Spec,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    delta: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """Class-wise error-minimizing steps: one (H, W) pattern per class, masked per image."""
    gen = torch.Generator().manual_seed(spec.seed)
    step = 2.5 * spec.eps / max(steps, 1)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        total = torch.zeros_like(d)
        for i in range(0, len(x), 256):
            sl = slice(i, i + 256)
            per = project(d[y[sl]] * mask[sl], spec.eps, "l2")
            draw = draw_augmentation(per.shape[0], 1.0, device=x.device, generator=gen)
            loss = nn.functional.cross_entropy(
                model(augment((x[sl] + per).clamp(0, 1), draw)), y[sl], reduction="sum"
            )
            (g,) = torch.autograd.grad(loss, d)
            total += g
        with torch.no_grad():
            gn = total.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = project(delta - step * total / gn, spec.eps, "l2")
    for p in model.parameters():
        p.requires_grad_(True)
    return delta


def row_ue_classwise(spec: Spec) -> tuple[Any, Any, dict[str, Any]]:
    """The cheap variant: min-min with one pattern per class (stored in a key, no surrogate)."""
    from medcrypt.processing import build_model

    dev = torch.device(spec.device)
    mm = spec.minmin
    x = torch.as_tensor(spec.x_train).unsqueeze(1).to(dev)
    y = torch.as_tensor(spec.y_train).to(dev)
    mask = torch.as_tensor(foreground_masks(spec.x_train)).unsqueeze(1).float().to(dev)
    model = build_model(spec.craft_archs[0], spec.n_classes, width=mm.width, seed=spec.seed).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=mm.lr, weight_decay=mm.weight_decay)
    delta = torch.zeros(spec.n_classes, 1, *x.shape[-2:], device=dev)
    gen = torch.Generator().manual_seed(spec.seed)
    acc, rounds = 0.0, 0
    for rounds in range(1, mm.max_rounds + 1):  # noqa: B007 - rounds is reported
        model.train()
        for _ in range(mm.train_steps):
            idx = torch.randint(0, len(x), (mm.batch_size,), generator=gen).to(dev)
            xb = (x[idx] + project(delta[y[idx]] * mask[idx], spec.eps, "l2")).clamp(0, 1)
            draw = draw_augmentation(len(idx), 1.0, device=dev, generator=gen)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(augment(xb, draw)), y[idx]).backward()
            opt.step()
        delta = _classwise_noise(spec, model, x, y, mask, delta, mm.noise_steps)
        with torch.no_grad():
            rel = (x + project(delta[y] * mask, spec.eps, "l2")).clamp(0, 1)
            acc = float((model(rel).argmax(1) == y).float().mean())
        if acc >= mm.stop_accuracy:
            break

    def release(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(xs).unsqueeze(1).to(dev)
        mt = torch.as_tensor(foreground_masks(xs)).unsqueeze(1).float().to(dev)
        per = project(delta[torch.as_tensor(ys).to(dev)] * mt, spec.eps, "l2")
        return (xt + per).clamp(0, 1)[:, 0].cpu().numpy().astype(np.float32)

    info = {"rounds": rounds, "accuracy": acc}
    print(f"  class-wise min-min: {rounds} rounds, accuracy {acc:.3f}", flush=True)
    return release(spec.x_train, spec.y_train), release(spec.x_test, spec.y_test), info


def _base(spec: Spec) -> nn.Module:
    """A clean-trained crafting model of the first crafting family (the targeted rows)."""
    _, model = fit_victim(
        spec.craft_archs[0],
        spec.x_train,
        spec.y_train,
        {},
        n_classes=spec.n_classes,
        width=spec.minmin.width,
        settings=TrainSettings(epochs=spec.base_epochs, batch_size=32, shift=spec.shift),
        seed=spec.seed + 100,
        device=spec.device,
    )
    return model


def _targeted_key(spec: Spec, eps: float) -> EncryptionKey:
    pgd = PGDSettings(
        mode="poison",
        eps=eps,
        iters=spec.noise_iters * 2,
        step=2.5 * eps / (spec.noise_iters * 2),
        foreground=True,
        restarts=1,
    )
    names = [str(c) for c in range(spec.n_classes)]
    return EncryptionKey.generate(
        names, combiner="none", seed=spec.seed, pgd=pgd, secret=_secret(spec.seed)
    )


def row_targeted(spec: Spec) -> tuple[Any, Any, dict[str, Any]]:
    """Class-targeted crafting (poison mode, one secret target per class) from a clean model."""
    enc = Encryptor(_base(spec), _targeted_key(spec, spec.eps), device=spec.device)
    return _encrypt(enc, spec.x_train, spec.y_train), _encrypt(enc, spec.x_test, spec.y_test), {}


def row_ue_targeted(spec: Spec) -> tuple[Any, Any, dict[str, Any]]:
    """Both in one budget: error-minimizing noise at eps/sqrt(2), then targeted crafting from
    there at eps/sqrt(2) against a clean model, the sum projected back onto the eps-ball."""
    half = spec.eps / math.sqrt(2)
    sub = Spec(**{**spec.__dict__, "eps": half})
    ue_train, ue_test, info = row_ue(sub)
    enc = Encryptor(_base(spec), _targeted_key(spec, half), device=spec.device)

    def finish(clean: np.ndarray, start: np.ndarray, y: np.ndarray) -> np.ndarray:
        both = _encrypt(enc, start, y)
        d = torch.as_tensor(both - clean).unsqueeze(1)
        m = torch.as_tensor(foreground_masks(clean)).unsqueeze(1).float()
        return np.clip(clean + project(d, spec.eps, "l2", m)[:, 0].numpy(), 0, 1).astype(np.float32)

    return (
        finish(spec.x_train, ue_train, spec.y_train),
        finish(spec.x_test, ue_test, spec.y_test),
        info,
    )


def build_row(name: str, spec: Spec) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    if name == "clean":
        return spec.x_train, spec.x_test, {}
    if name == "ue":
        return row_ue(spec)
    if name == "ue_ensemble":
        return row_ue(spec, ("cnn", "resnet18", "vgg11"))
    if name in ("ue_sem", "ue_rem", "ue_wide"):  # issue 23's levers on the product's way
        levers: dict[str, dict[str, Any]] = {
            "ue_sem": {"robust": 0.5},  # SEM: one random draw at half the radius
            "ue_rem": {"robust": 0.5, "robust_steps": 3},  # REM-lite: adversarial surrogate
            "ue_wide": {"width": 64},  # a standard-width surrogate
        }
        update = levers[name]
        return row_ue(Spec(**{**spec.__dict__, "minmin": spec.minmin.model_copy(update=update)}))
    fn = {
        "ue_full": row_ue_full,
        "ue_classwise": row_ue_classwise,
        "targeted": row_targeted,
        "ue+targeted": row_ue_targeted,
    }[name]
    return fn(spec)
