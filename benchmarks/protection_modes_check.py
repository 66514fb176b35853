"""Quick same-run check of the protection modes on a small figshare-btd subset (issue 14).

One base model (ResNet-18 width 8, trained briefly on the subset's train split), one key per
mode at one budget, the same training slices encrypted with each; after the 16-bit quantise
round trip it reports per mode: targeted success (base model predicts the key's target),
targeted success under a random victim-style augmentation (flip, shift, rotation, scaling,
intensity), whole-slice and foreground PSNR / SSIM, the share of exactly-black pixels (the
reader-study blinding cue) and the share of background pixels left bit-identical.

It shows the modes work, not how well they protect (victim training is the sweep's job:
``benchmarks/protection_figshare.py``). Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/protection_modes_check.py
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
from _figshare import load_figshare

from medcrypt.processing import (
    EncryptionKey,
    Encryptor,
    PGDSettings,
    TrainSettings,
    augment,
    build_model,
    dequantise,
    draw_augmentation,
    evaluate_accuracy,
    image_metrics,
    quantise,
    train_model,
)

#: (row name, PGDSettings fields besides eps/step/iters); Linf rows use --linf-eps
ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("paper, whole slice", {"mode": "paper", "foreground": False}),
    ("paper + foreground", {"mode": "paper"}),
    ("poison l2", {"mode": "poison"}),
    ("poison linf", {"mode": "poison", "norm": "linf"}),
    ("shortcut l2", {"mode": "shortcut"}),
    ("shortcut+poison l2", {"mode": "shortcut+poison"}),
)


def _reached_augmented(enc: Encryptor, x: np.ndarray, targets: list[int], seed: int) -> float:
    """Targeted success of the base model on one random augmentation of each image."""
    assert enc.model is not None
    xt = torch.tensor(x).unsqueeze(1)
    draw = draw_augmentation(len(x), 1.0, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = enc.model(augment(xt, draw)).argmax(1).numpy()
    return float((pred == np.asarray(targets)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=32, help="image side (area averaged from 256)")
    ap.add_argument("--per-class", type=int, default=120, help="train slices per class")
    ap.add_argument("--encrypt", type=int, default=48, help="train slices encrypted per mode")
    ap.add_argument("--eps", type=float, default=0.5, help="L2 budget")
    ap.add_argument("--linf-eps", type=float, default=4 / 255, help="Linf budget")
    ap.add_argument("--iters", type=int, default=30, help="PGD iterations per restart")
    ap.add_argument("--epochs", type=int, default=8, help="base model epochs")
    ap.add_argument("--json", help="write the rows here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    d = load_figshare(size=args.size, limit=args.per_class)
    base = build_model("resnet18", 3, width=8, seed=0)
    train_model(
        base,
        d.x_train,
        d.y_train,
        seed=0,
        device="cpu",
        settings=TrainSettings(epochs=args.epochs, batch_size=32, lr=2e-3, shift=2),
    )
    acc = evaluate_accuracy(base, d.x_test, d.y_test, device="cpu")
    print(
        f"base ResNet-18/8 on {len(d.x_train)} train slices at {args.size}px: test accuracy "
        f"{acc:.3f} on {len(d.x_test)} test slices ({time.perf_counter() - t0:.0f} s)"
    )
    pick = np.concatenate([np.flatnonzero(d.y_train == c)[: args.encrypt // 3] for c in range(3)])
    x, y = d.x_train[pick], d.y_train[pick]
    rows = []
    for name, fields in ROWS:
        eps = args.linf_eps if fields.get("norm") == "linf" else args.eps
        pgd = PGDSettings.model_validate(
            {"eps": eps, "step": 2.5 * eps / args.iters, "iters": args.iters, "precision": "fp32"}
            | ({"restarts": 2} if "poison" in fields["mode"] else {})
            | fields
        )
        key = EncryptionKey.generate(d.class_names, combiner="none", seed=1, pgd=pgd)
        enc = Encryptor(base, key, device="cpu")
        t1 = time.perf_counter()
        res = enc.encrypt(x, y)
        secs = time.perf_counter() - t1
        stored = dequantise(quantise(res.images, x, eps=eps, norm=pgd.norm))
        assert res.foreground is not None
        m = image_metrics(x, stored, res.foreground)
        targets = [key.targets[int(c)][0] for c in y]
        with torch.no_grad():
            assert enc.model is not None
            pred = enc.model(torch.tensor(stored).unsqueeze(1)).argmax(1).numpy()
        bg = ~res.foreground
        row = {
            "mode": name,
            "norm": pgd.norm,
            "eps": round(eps, 5),
            "target_success": float((pred == np.asarray(targets)).mean()),
            "target_success_augmented": _reached_augmented(enc, stored, targets, seed=7),
            "psnr": float(np.mean(m["psnr"])),
            "psnr_foreground": float(np.mean(m["psnr_foreground"])),
            "ssim": float(np.mean(m["ssim"])),
            "ssim_foreground": float(np.mean(m["ssim_foreground"])),
            "black_original": float((x == 0).mean()),
            "black_released": float((stored == 0).mean()),
            "background_identical": float((stored[bg] == x[bg]).mean()),
            "seconds": round(secs, 2),
        }
        rows.append(row)
        print(
            f"{name:20s} {pgd.norm:4s} eps {eps:.4f}: success {row['target_success']:.2f} "
            f"(augmented {row['target_success_augmented']:.2f}), PSNR {row['psnr']:.1f} dB "
            f"(fg {row['psnr_foreground']:.1f}), SSIM {row['ssim']:.3f} "
            f"(fg {row['ssim_foreground']:.3f}), black {row['black_original']:.2f} -> "
            f"{row['black_released']:.2f}, background identical "
            f"{row['background_identical']:.3f}, {secs:.1f} s",
            flush=True,
        )
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "base_accuracy": acc, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
