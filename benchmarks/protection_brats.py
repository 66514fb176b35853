"""Protection on real MRI: tumour-presence slices of the four BraTS 2015 sample cases.

The phantom protection bar is not met at 35 dB (benchmarks/README.md), and the explanation
given there is that the phantoms' tumours are visible cues a small perturbation cannot
outweigh, while real scans carry the faint predictive features the paper's method plants.
This benchmark checks that explanation on real scans, the only labelled real MRI we have:
``../shared/data/brats2015-sample`` (four contrast-enhanced T1 volumes with expert
segmentations, no tumour types).

Task: is there tumour in this axial slice? Label 1 when the slice has more than
``--min-area`` tumour pixels (any label > 0), 0 when it has none; slices in between are left
out, and so are slices with less than ``--min-brain`` brain pixels. Each slice is windowed to
[0, 1] with the job's own display window (``robust_window``), cropped to the 192x192 square
that holds every case's brain and reduced to ``--size`` pixels (area averaging).

Protocol: leave one case out (4 folds; a test slice never comes from a training patient).
Per fold, the data owner's base model (ResNet-18, width 32) is trained on the clean training
cases, and the paper's evaluation (``evaluate_protection``) encrypts the training slices
toward the other class (the only key two classes allow: ``0 -> 1``, ``1 -> 0``), trains
fresh ResNet-18 and VGG-11 attackers and scores them on the held-out case, clean and
encrypted. Chance is the held-out case's majority share, printed per fold.

Known confound, stated rather than hidden: tumour-free slices lie near the top and bottom of
the brain, so the brain's outline also tells the classes apart.

Usage::

    python benchmarks/protection_brats.py                     # eps 1.1 (~35 dB at 64x64)
    python benchmarks/protection_brats.py --eps 0.6,1.1 --folds 0,1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _protection import arch_scores, eps_list
from skimage.transform import resize

from medcrypt.medical import read_volume
from medcrypt.medical._select import robust_window
from medcrypt.processing import (
    EncryptionKey,
    PGDSettings,
    TrainSettings,
    build_model,
    evaluate_accuracy,
    train_model,
)
from medcrypt.processing.assessment import (
    ProtectionReport,
    ProtectionSettings,
    evaluate_protection,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2015-sample"
CLASSES = ("no tumour", "tumour")
CROP = slice(30, 222)  # 192 pixels; every sample case's brain lies inside (rows 42-215)


def case_slices(
    folder: Path, *, size: int, min_area: int, min_brain: int
) -> tuple[np.ndarray, np.ndarray]:
    """The labelled axial slices of one case: (N, size, size) float32 in [0, 1] and labels."""
    image = read_volume(folder / "T1c_subtrMeanDivStd.nii.gz", case_id=folder.name)
    seg = read_volume(folder / "OTMultiClass.nii.gz", case_id=folder.name).array > 0
    brain = read_volume(folder / "brainmask.nii.gz", case_id=folder.name).array > 0
    if image.axcodes[2] != "S":
        raise SystemExit(f"{folder}: expected the third axis to be axial, got {image.axcodes}")
    xs, ys = [], []
    for k in range(image.shape[2]):
        area, brain_px = int(seg[:, :, k].sum()), int(brain[:, :, k].sum())
        if brain_px < min_brain or 0 < area <= min_area:
            continue
        plane = image.array[:, :, k].astype(np.float64)
        lo, hi = robust_window(plane)
        x01 = np.clip((plane - lo) / (hi - lo), 0.0, 1.0)[CROP, CROP]
        small = resize(x01, (size, size), order=1, anti_aliasing=True, preserve_range=True)
        xs.append(np.clip(small, 0.0, 1.0).astype(np.float32))
        ys.append(1 if area > min_area else 0)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _row(
    fold: str, eps: float, chance: float, base_acc: float, r: ProtectionReport
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "held_out": fold,
        "eps": eps,
        "psnr": round(r.test_perceptual.psnr_mean, 2),
        "ssim": round(r.test_perceptual.ssim_mean, 3),
        "target_success": round(r.train_perceptual.target_success, 3),
        "chance": round(chance, 3),
        "base": round(base_acc, 3),
        "s": round(r.seconds),
    }
    row.update(arch_scores(r))
    return row


def _folds(text: str, n_cases: int) -> list[int]:
    """``--folds``: held-out case indices in ``range(n_cases)`` (empty: every case)."""
    if not text:
        return list(range(n_cases))
    try:
        folds = [int(v) for v in text.split(",")]
    except ValueError:
        msg = f"--folds: expected case indices separated by commas, got {text!r}"
        raise SystemExit(msg) from None
    bad = [f for f in folds if not 0 <= f < n_cases]
    if bad:
        raise SystemExit(f"--folds: {bad} not in 0..{n_cases - 1} ({n_cases} cases found)")
    return folds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--min-area", type=int, default=100, help="tumour pixels for label 1")
    ap.add_argument("--min-brain", type=int, default=3000, help="brain pixels to keep a slice")
    ap.add_argument("--eps", type=eps_list, default=(1.1,), help="comma-separated L2 budgets")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--folds", default="", help="held-out case indices (default: all)")
    ap.add_argument("--base-width", type=int, default=32)
    ap.add_argument("--base-epochs", type=int, default=15)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder (the BraTS sample, see ../shared/data)")
    folders = sorted(p for p in args.data.iterdir() if (p / "OTMultiClass.nii.gz").exists())
    if len(folders) < 2:
        raise SystemExit(f"{args.data}: need at least two BraTS case folders, found {len(folders)}")
    budgets = args.eps
    folds = _folds(args.folds, len(folders))
    data = [
        case_slices(f, size=args.size, min_area=args.min_area, min_brain=args.min_brain)
        for f in folders
    ]
    for f, (_, y) in zip(folders, data, strict=True):
        print(f"{f.name}: {len(y)} slices, {int(y.sum())} with tumour", flush=True)
    key = EncryptionKey.from_targets(CLASSES, [[1], [0]], combiner="none", seed=0)
    train = TrainSettings(epochs=args.epochs, batch_size=32)
    cfg = ProtectionSettings(archs=("resnet18", "vgg11"), width=args.width, train=train, seed=0)
    rows = []
    for held in folds:
        x_te, y_te = data[held]
        x_tr = np.concatenate([d[0] for i, d in enumerate(data) if i != held])
        y_tr = np.concatenate([d[1] for i, d in enumerate(data) if i != held])
        chance = max(float(y_te.mean()), 1.0 - float(y_te.mean()))
        base = build_model("resnet18", len(CLASSES), width=args.base_width, seed=1)
        settings = TrainSettings(epochs=args.base_epochs, batch_size=32)
        train_model(base, x_tr, y_tr, seed=1, settings=settings, device="cpu")
        base_acc = evaluate_accuracy(base.eval(), x_te, y_te, device="cpu")
        print(f"held out {folders[held].name}: base model {base_acc:.3f}", flush=True)
        for eps in budgets:
            pgd = PGDSettings(eps=eps, step=0.1, iters=args.iters, precision=args.precision)
            r = evaluate_protection(
                base,
                key,
                x_tr,
                y_tr,
                x_te,
                y_te,
                settings=cfg,
                pgd=pgd,
                device="cpu",
                dataset=f"BraTS 2015 sample, held out {folders[held].name}",
            )
            row = _row(folders[held].name, eps, chance, base_acc, r)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| eps | mean PSNR | mean SSIM | original test | clean-trained | encrypted test |")
    print("|---|---|---|---|---|---|")
    for eps in budgets:
        sel = [r for r in rows if r["eps"] == eps]
        cells = []
        for field in ("orig", "clean", "enc"):
            means = [100 * np.mean([r[a][field] for r in sel]) for a in ("resnet18", "vgg11")]
            cells.append(" / ".join(f"{m:.1f}%" for m in means))
        psnr, ssim = np.mean([r["psnr"] for r in sel]), np.mean([r["ssim"] for r in sel])
        print(f"| {eps} | {psnr:.1f} dB | {ssim:.3f} | " + " | ".join(cells) + " |")
    print("(ResNet-18 / VGG-11, final epoch, mean over the held-out cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
