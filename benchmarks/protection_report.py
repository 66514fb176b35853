"""Protection report on synthetic phantoms at a larger scale than the slow test.

Runs the paper's Table-12 protocol (see ``medcrypt.processing.assessment._evaluation``):
train a base
ResNet-18 on clean phantoms, encrypt the training split with true labels and the test split
with predicted labels, train each architecture on the encrypted data, and report accuracy on
the encrypted and the original test set (peak and final) next to the clean baseline, plus
PSNR / SSIM / L2 of the released images. Prints the Markdown table and whether the issue's
bar is met; writes the JSON report with ``--out``.

Usage::

    python benchmarks/protection_report.py                       # CPU defaults, a few minutes
    python benchmarks/protection_report.py --n-per-class 400 --epochs 30 --width 16 \
        --archs resnet18,preact_resnet18,vgg11 --device cuda --out /tmp/report
    # a strong data-owner model, wider attackers, the basic key (one target, y -> y+1)
    python benchmarks/protection_report.py --base-width 64 --base-epochs 20 --width 32 \
        --key basic --eps 1.1 --iters 50 --n-per-class 100 --n-test-per-class 30 --epochs 8

``--key paper`` (default) is the paper's 5-class Horizontal-Concat correspondence; ``basic``
is the paper's basic encryption with one target per class, ``y -> y+1``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from _protection import eps_list

from medcrypt.medical import CLASS_NAMES
from medcrypt.processing import EncryptionKey, PGDSettings, TrainSettings, release_json
from medcrypt.processing.assessment import (
    ProtectionReport,
    ProtectionSettings,
    paper_key,
    phantom_protection_report,
    phantom_setup,
)


def _key(kind: str, pgd: PGDSettings, seed: int) -> EncryptionKey:
    if kind == "paper":
        return paper_key(CLASS_NAMES, seed=seed, pgd=pgd)
    n = len(CLASS_NAMES)
    next_class = [[(y + 1) % n] for y in range(n)]
    return EncryptionKey.from_targets(CLASS_NAMES, next_class, combiner="none", seed=seed, pgd=pgd)


def _sweep_table(reports: list[ProtectionReport]) -> str:
    """The budget / protection trade-off: one row per eps, final original-test accuracy."""
    archs = [r.arch for r in reports[0].results]
    lines = [
        "| eps | mean PSNR (dB) | mean SSIM | "
        + " | ".join(f"{a} orig test (final / peak)" for a in archs)
        + " | bar |",
        "|---" * (len(archs) + 4) + "|",
    ]
    for rep in reports:
        cells = [
            f"{rep.pgd.eps:g}",
            f"{rep.test_perceptual.psnr_mean:.1f}",
            f"{rep.test_perceptual.ssim_mean:.3f}",
            *(f"{r.original_test_final:.1%} / {r.original_test_peak:.1%}" for r in rep.results),
            "met" if rep.passes() else "not met",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n-per-class", type=int, default=200)
    ap.add_argument("--n-test-per-class", type=int, default=60)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--archs", default="resnet18,vgg11")
    ap.add_argument("--width", type=int, default=8, help="width of the evaluated models")
    ap.add_argument("--base-width", type=int, default=None, help="default: --width")
    ap.add_argument("--base-epochs", type=int, default=None, help="default: --epochs")
    ap.add_argument("--key", choices=("paper", "basic"), default="paper")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument(
        "--eps",
        type=eps_list,
        default=(1.0,),
        help="L2 budget; a comma list (1.1,1.6,2.2) sweeps it against one base model",
    )
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--out", type=Path, default=None, help="folder for protection_report.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ProtectionSettings(
        archs=tuple(a for a in args.archs.split(",") if a),
        width=args.width,
        train=TrainSettings(epochs=args.epochs, batch_size=32),
        seed=args.seed,
        base_width=args.base_width,
        base_epochs=args.base_epochs,
    )
    t0 = time.perf_counter()
    setup = phantom_setup(
        n_per_class=args.n_per_class,
        n_test_per_class=args.n_test_per_class,
        size=args.size,
        seed=args.seed,
        settings=settings,
        device=args.device,
    )
    reports: list[ProtectionReport] = []
    for eps in args.eps:
        t1 = time.perf_counter()
        pgd = PGDSettings(eps=eps, step=args.step, iters=args.iters)
        report = phantom_protection_report(
            seed=args.seed,
            settings=settings,
            pgd=pgd,
            key=_key(args.key, pgd, args.seed),
            device=args.device,
            setup=setup,
        )
        reports.append(report)
        print(report.to_markdown())
        print(
            f"bar (mean PSNR >= 35 dB, enc/clean >= 0.9, orig <= 40%, final): "
            f"{'MET' if report.passes() else 'NOT met'}; with peak original accuracy: "
            f"{'MET' if report.passes(peak=True) else 'NOT met'}; "
            f"{time.perf_counter() - t1:.0f} s for eps {eps:g}"
        )
        if args.out is not None:
            folder = args.out if len(args.eps) == 1 else args.out / f"eps_{eps:g}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "protection_report.json").write_bytes(
                release_json(report, where="protection_report.json")
            )
            (folder / "protection_report.md").write_text(report.to_markdown())
    if len(reports) > 1:
        print(_sweep_table(reports))
    print(f"wall {time.perf_counter() - t0:.0f} s (base model trained once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
