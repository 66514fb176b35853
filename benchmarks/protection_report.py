"""Protection report on synthetic phantoms at a larger scale than the slow test.

Runs the paper's Table-12 protocol (see ``medcrypt.processing._evaluation``): train a base
ResNet-18 on clean phantoms, encrypt the training split with true labels and the test split
with predicted labels, train each architecture on the encrypted data, and report accuracy on
the encrypted and the original test set (peak and final) next to the clean baseline, plus
PSNR / SSIM / L2 of the released images. Prints the Markdown table and whether the issue's
bar is met; writes the JSON report with ``--out``.

Usage::

    python benchmarks/protection_report.py                       # CPU defaults, a few minutes
    python benchmarks/protection_report.py --n-per-class 400 --epochs 30 --width 16 \
        --archs resnet18,preact_resnet18,vgg11 --device cuda --out /tmp/report
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from medcrypt.processing import PGDSettings, TrainSettings
from medcrypt.processing._evaluation import ProtectionSettings, phantom_protection_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n-per-class", type=int, default=200)
    ap.add_argument("--n-test-per-class", type=int, default=60)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--archs", default="resnet18,vgg11")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--eps", type=float, default=1.0)
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
    )
    t0 = time.perf_counter()
    report = phantom_protection_report(
        n_per_class=args.n_per_class,
        n_test_per_class=args.n_test_per_class,
        size=args.size,
        seed=args.seed,
        settings=settings,
        pgd=PGDSettings(eps=args.eps, step=args.step, iters=args.iters),
        device=args.device,
    )
    print(report.to_markdown())
    print(
        f"bar (mean PSNR >= 35 dB, enc/clean >= 0.9, orig <= 40%, final): "
        f"{'MET' if report.passes() else 'NOT met'}; with peak original accuracy: "
        f"{'MET' if report.passes(peak=True) else 'NOT met'}; "
        f"wall {time.perf_counter() - t0:.0f} s"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "protection_report.json").write_text(report.model_dump_json(indent=2))
        (args.out / "protection_report.md").write_text(report.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
