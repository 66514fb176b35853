"""Protection levers on phantoms, each against a baseline from the same run (fourth round).

Everything but the lever under test is the slow test's cheap setting: 500 training / 150
test phantoms of 64x64 (seeds 0 and 1), a width-32 ResNet-18 base model trained 15 epochs
(seed 1), L2 PGD eps 1.1 (35.3 dB), step 0.1, 30 iterations, attackers ResNet-18 and VGG-11 of
width 8 trained 8 epochs (seed 0). One JSON line per evaluation: mean PSNR, targeted success,
and per architecture clean / encrypted-test / original-test accuracy and per-class recall.

Levers (combine freely; each ``--keys`` entry is evaluated against every base listed):

* ``--base-archs resnet18,vgg11,preact_resnet18``: the data owner's base model is the mean
  of the logits of one model per architecture (trained with seeds 1, 2, 3); the first one
  alone is evaluated too, as the same run's baseline.
* ``--input-shift S``: input diversity, the input is rolled by a random (dy, dx) in [-S, S]
  before every PGD forward pass (not for predictions or the final check).
* ``--keys basic,paper,perm1-2-3-4-0,paper-region``: ``basic`` = ``y -> y+1``; ``paper``
  = the paper's concat key; ``permA-B-C-D-E`` = one target per class, class ``i -> A..E[i]``;
  ``paper-region`` = the paper's key with each target's PGD restricted to the strip of the
  image it ends up in, at budget ``eps * sqrt(strip share)`` (the strips then add up to at
  most eps).
* ``--universal N``: a class-wise component. For every target ``t``, one perturbation
  ``u_t`` (L2 <= eps) is fitted over all training phantoms that the key sends to ``t``
  (N normalised steps on their mean target loss, the universal adversarial perturbation
  idea); each image starts its per-sample PGD at ``x + u_t``, and the released image is
  projected back onto the eps-ball around ``x``. ``--refine 0`` releases ``x + u_t`` alone.
  Only for one-target keys (``basic``, ``permA-B-..``). Test images get the ``u_t`` fitted on
  the training split (the key's owner fits them once).
* ``--atypical P``: share of phantoms at an atypical site (default 0.15). Changes the data,
  not the method: a diagnostic of how much the tumour site decides the protection.

Usage::

    python benchmarks/protection_levers.py --base-archs resnet18,vgg11,preact_resnet18 \\
        --keys basic,paper --precision fp32
    python benchmarks/protection_levers.py --input-shift 3 --keys basic --precision fp32
    python benchmarks/protection_levers.py --universal 100 --keys basic
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from _protection import arch_scores
from torch import nn

import medcrypt.medical._phantoms as phantoms
from medcrypt.medical import CLASS_NAMES, make_phantom_slices
from medcrypt.processing import (
    EncryptionKey,
    EncryptionResult,
    Encryptor,
    PGDSettings,
    TrainSettings,
    build_model,
    enforce_budget,
    evaluate_accuracy,
    project_l2,
    train_model,
)
from medcrypt.processing.assessment import (
    ProtectionReport,
    ProtectionSettings,
    evaluate_protection,
    paper_key,
)
from medcrypt.processing.assessment import _evaluation as evaluation
from medcrypt.processing.protection._pgd import _norms, frozen_eval, resolve_precision


class _MeanLogits(nn.Module):
    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


class _Shifted(nn.Module):
    """Rolls the input by a random offset whenever gradients are on (PGD's passes)."""

    def __init__(self, model: nn.Module, shift: int, seed: int = 123) -> None:
        super().__init__()
        self.model, self.shift = model, shift
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.shift > 0:
            dy, dx = torch.randint(-self.shift, self.shift + 1, (2,), generator=self.gen).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        return self.model(x)


def _result(
    originals: np.ndarray,
    released: np.ndarray,
    success: np.ndarray,
    targets: list[tuple[int, ...]],
) -> EncryptionResult:
    """An ``EncryptionResult`` for (B, H, W) released images: L2 and L-inf to the originals."""
    diff = (released.astype(np.float64) - originals).reshape(len(originals), -1)
    return EncryptionResult(
        images=released.astype(np.float32),
        l2=np.sqrt((diff**2).sum(1)),
        linf=np.abs(diff).max(1),
        target_success=success,
        targets=targets,
    )


class _RegionEncryptor(Encryptor):
    """Concat keys only: each target's PGD moves only the pixels of its own strip.

    The loop is ``targeted_pgd_l2`` with a gradient mask and a per-row budget, which that
    function does not take; it stays a benchmark-local variant because the lever measured no
    effect (the fourth round in benchmarks/README.md).
    """

    def encrypt(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        *,
        masks: np.ndarray | None = None,  # whole-slice lever: no foreground restriction
    ) -> EncryptionResult:
        assert self.model is not None
        arr = self._batch(images)
        y = np.asarray(labels, dtype=np.int64)
        b, h, w = arr.shape
        cfg = self.settings
        rows, targets, strips, budgets = [], [], [], []
        for i, c in enumerate(y):
            cuts = [0.0, *self.key.combiner_params[int(c)], 1.0]
            for k, t in enumerate(self.key.targets[int(c)]):
                lo, hi = round(cuts[k] * w), round(cuts[k + 1] * w)
                mask = np.zeros((h, w), np.float32)
                mask[:, lo:hi] = 1.0
                rows.append(i)
                targets.append(t)
                strips.append(mask)
                budgets.append(cfg.eps * np.sqrt((hi - lo) / w))
        originals = torch.from_numpy(arr).unsqueeze(1)
        x0 = originals[torch.tensor(rows)].contiguous(memory_format=torch.channels_last)
        goal = torch.tensor(targets)
        m = torch.from_numpy(np.stack(strips)).unsqueeze(1)
        e = torch.tensor(budgets, dtype=torch.float32).view(-1, 1, 1, 1)
        x, best = x0.clone(), x0.clone()
        best_loss = torch.full((len(rows),), float("inf"))
        bf16 = self.compute["dtype"] == "bf16"
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

        for it in range(cfg.iters + 1):
            x.requires_grad_(True)
            with autocast:
                logits = self.model(x)
            loss = nn.functional.cross_entropy(logits.float(), goal, reduction="none")
            last = it == cfg.iters
            grad = None if last else torch.autograd.grad(loss.sum(), x)[0]
            with torch.no_grad():
                better = loss.detach() < best_loss
                best_loss = torch.where(better, loss.detach(), best_loss)
                best = torch.where(better.view(-1, 1, 1, 1), x.detach(), best)
                if grad is None:
                    break
                g = grad * m
                g = g / _norms(g).clamp_min(1e-12)
                d = project_l2(x.detach() - cfg.step * g - x0, e)  # type: ignore[arg-type]
                x = (x0 + d).clamp(0.0, 1.0)
        with torch.no_grad():
            hit = (self.model(best).argmax(1) == goal).numpy()
        released = originals.clone().index_add_(
            0, torch.tensor(rows), ((best - x0) * m).contiguous()
        )
        out = enforce_budget(originals, released, cfg.eps)[:, 0].numpy()
        rows_a = np.asarray(rows)
        success = np.array([hit[rows_a == i].mean() for i in range(b)])
        return _result(arr, out, success, [tuple(self.key.targets[int(c)]) for c in y])


def fit_universal(
    model: nn.Module,
    key: EncryptionKey,
    images: np.ndarray,
    labels: np.ndarray,
    pgd: PGDSettings,
    iters: int,
    bf16: bool,
) -> dict[int, torch.Tensor]:
    """One (1, 1, H, W) perturbation per target, fitted on the images the key sends there."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out: dict[int, torch.Tensor] = {}
    with frozen_eval(model):
        for t in sorted({int(v) for ts in key.targets for v in ts}):
            sources = [c for c in range(key.num_classes) if t in key.targets[c]]
            x = torch.from_numpy(images[np.isin(labels, sources)]).unsqueeze(1)
            target = torch.full((len(x),), t)
            u = torch.zeros((1, 1, *x.shape[2:]))
            for _ in range(iters):
                u.requires_grad_(True)
                with autocast:
                    logits = model((x + u).clamp(0.0, 1.0))
                loss = nn.functional.cross_entropy(logits.float(), target)
                (g,) = torch.autograd.grad(loss, u)
                with torch.no_grad():
                    step = u.detach() - pgd.step * g / _norms(g).clamp_min(1e-12)
                    u = project_l2(step, pgd.eps)
            with torch.no_grad(), autocast:
                hit = (model((x + u).clamp(0.0, 1.0)).argmax(1) == t).float().mean().item()
            print(f"universal u_{t}: {len(x)} images, |u| {_norms(u).item():.3f}, hits {hit:.3f}")
            out[t] = u
    return out


class _UniversalEncryptor(Encryptor):
    """One-target keys only: per-sample PGD starts at ``x + u_t`` (see ``--universal``)."""

    universal: ClassVar[dict[int, torch.Tensor]] = {}
    refine: ClassVar[bool] = True

    def encrypt(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        *,
        masks: np.ndarray | None = None,  # whole-slice lever: no foreground restriction
    ) -> EncryptionResult:
        assert self.model is not None
        arr = self._batch(images)
        y = np.asarray(labels, dtype=np.int64)
        t = [int(self.key.targets[int(c)][0]) for c in y]
        x0 = torch.from_numpy(arr).unsqueeze(1)
        start = (x0 + torch.cat([self.universal[v] for v in t])).clamp(0.0, 1.0)
        if self.refine:
            start = torch.from_numpy(super().encrypt(start[:, 0].numpy(), y).images).unsqueeze(1)
        out = enforce_budget(x0, start, self.settings.eps)
        with torch.no_grad():
            hit = (self.model(out).argmax(1) == torch.tensor(t)).numpy()
        return _result(arr, out[:, 0].numpy(), hit.astype(np.float64), [(v,) for v in t])


def _key(name: str, pgd: PGDSettings) -> EncryptionKey:
    n = len(CLASS_NAMES)
    if name in ("paper", "paper-region"):
        return paper_key(CLASS_NAMES, seed=0, pgd=pgd)
    if name == "basic":
        perm = [(y + 1) % n for y in range(n)]
    elif name.startswith("perm"):
        perm = [int(v) for v in name[4:].split("-")]
    else:
        raise SystemExit(f"unknown key {name!r}: expected basic, paper, paper-region or permA-B-..")
    return EncryptionKey.from_targets(
        CLASS_NAMES, [[t] for t in perm], combiner="none", seed=0, pgd=pgd
    )


def _row(key: str, base: str, r: ProtectionReport, seconds: float) -> dict[str, Any]:
    """One JSON line: the run's budget and success, and each architecture's accuracies."""
    row: dict[str, Any] = {
        "key": key,
        "base": base,
        "psnr": round(r.test_perceptual.psnr_mean, 2),
        "target_success": round(r.train_perceptual.target_success, 3),
        "s": round(seconds),
    }
    row.update(arch_scores(r))
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base-archs", default="resnet18")
    ap.add_argument("--base-width", type=int, default=32)
    ap.add_argument("--base-epochs", type=int, default=15)
    ap.add_argument("--eps", type=float, default=1.1)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--input-shift", type=int, default=0)
    ap.add_argument("--keys", default="basic")
    ap.add_argument("--universal", type=int, default=0, help="steps fitting u_t (0 = off)")
    ap.add_argument("--refine", type=int, choices=(0, 1), default=1)
    ap.add_argument("--atypical", type=float, default=None)
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    # whole-slice, as the rows in benchmarks/README.md were measured (before the foreground
    # budget became the default)
    pgd = PGDSettings(
        eps=args.eps, step=0.1, iters=args.iters, precision=args.precision, foreground=False
    )
    keys = [(name, _key(name, pgd)) for name in args.keys.split(",")]  # refuse bad names first
    if args.universal and any(len(t) != 1 for _, k in keys for t in k.targets):
        raise SystemExit("--universal takes one-target keys only (basic, permA-B-..)")
    if args.atypical is not None:
        phantoms._ATYPICAL_P = args.atypical  # the diagnostic: phantoms with weaker site cues
    x_tr, y_tr = make_phantom_slices(100, size=64, seed=0)
    x_te, y_te = make_phantom_slices(30, size=64, seed=1)
    members = []
    for i, arch in enumerate(args.base_archs.split(",")):
        model = build_model(arch, len(CLASS_NAMES), width=args.base_width, seed=1 + i)
        settings = TrainSettings(epochs=args.base_epochs, batch_size=32)
        train_model(model, x_tr, y_tr, seed=1 + i, settings=settings, device="cpu")
        members.append(model.eval())
        acc = evaluate_accuracy(model, x_te, y_te, device="cpu")
        print(f"base {arch} width {args.base_width}: test accuracy {acc:.3f}", flush=True)
    bases: list[tuple[str, nn.Module]] = [("single", members[0])]
    if len(members) > 1:
        ensemble = _MeanLogits(members).eval()
        acc = evaluate_accuracy(ensemble, x_te, y_te, device="cpu")
        print(f"ensemble (mean logits): test accuracy {acc:.3f}", flush=True)
        bases.append(("ensemble", ensemble))
    if args.input_shift:
        bases = [(f"{n}+shift{args.input_shift}", _Shifted(b, args.input_shift)) for n, b in bases]
    cfg = ProtectionSettings(
        archs=("resnet18", "vgg11"), width=8, train=TrainSettings(epochs=8, batch_size=32), seed=0
    )

    def run(
        label: str, base_name: str, base: nn.Module, key: EncryptionKey, cls: type[Encryptor]
    ) -> None:
        evaluation.Encryptor = cls  # type: ignore[misc]
        start = time.perf_counter()
        r = evaluate_protection(
            base, key, x_tr, y_tr, x_te, y_te, settings=cfg, pgd=pgd, device="cpu"
        )
        print(json.dumps(_row(label, base_name, r, time.perf_counter() - start)), flush=True)

    bf16, _ = resolve_precision(pgd, torch.device("cpu"))
    try:
        for name, key in keys:
            plain = _RegionEncryptor if name == "paper-region" else Encryptor
            for base_name, base in bases:
                if args.universal:  # the lever first, then the plain key against the same base
                    _UniversalEncryptor.universal = fit_universal(
                        base, key, x_tr, y_tr, pgd, args.universal, bf16
                    )
                    _UniversalEncryptor.refine = bool(args.refine)
                    label = f"{name}+universal{args.universal}" + ("" if args.refine else "-only")
                    run(label, base_name, base, key, _UniversalEncryptor)
                run(name, base_name, base, key, plain)
    finally:
        evaluation.Encryptor = Encryptor  # type: ignore[misc]
    return 0


if __name__ == "__main__":
    sys.exit(main())
