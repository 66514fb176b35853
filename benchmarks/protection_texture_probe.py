"""Probe: does the protection appear when phantoms carry a faint non-robust class feature?

The paper's effect relies on natural images carrying predictive but non-robust features that
the base model uses and PGD can overwrite. The phantoms separate classes by robust cues
(tumour site and shape). This probe adds a fixed, faint, class-specific +-1 texture inside
the head (amplitude AMP, per-image gain 0.7-1.3) to train and test phantoms, then runs the
same Table-12 protocol as the slow test (resnet18 + vgg11, width 8, 8 epochs, concat key,
eps 1.0, 20 iterations), and prints the report. Run from the repo root, venv active:

    python benchmarks/protection_texture_probe.py 0.008 0.012 0.03

Measured on the development machine (2 CPU cores), original-test accuracy resnet18 / vgg11:
74.7% / 92.0% (AMP 0.008), 80.7% / 92.0% (0.012), 81.3% / 93.3% (0.03): no protection.
With a strong base model (``--base-width 32 --base-epochs 15``, 94.7-97.3% accurate):
75.3% / 88.0% (0.012) and 79.3% / 93.3% (0.03): still none.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from medcrypt.medical import CLASS_NAMES, make_phantom_slices
from medcrypt.processing import PGDSettings, TrainSettings, build_model, train_model
from medcrypt.processing.assessment import (
    ProtectionSettings,
    evaluate_protection,
    paper_key,
)

SIZE = 64


def add_texture(x: np.ndarray, y: np.ndarray, amp: float, seed: int) -> np.ndarray:
    """Add class ``y``'s fixed +-1 pattern times ``amp`` (random per-image gain) in the head."""
    if amp == 0:
        return x
    patterns = np.random.default_rng(1234).choice([-1.0, 1.0], size=(len(CLASS_NAMES), SIZE, SIZE))
    head = (x > 0.05).astype(np.float32)
    gain = np.random.default_rng(seed).uniform(0.7, 1.3, size=(len(y), 1, 1))
    out = x + amp * patterns[y].astype(np.float32) * head * gain.astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("amplitudes", nargs="+", type=float, help="texture amplitudes to try")
    parser.add_argument("--base-width", type=int, default=8, help="width of the base model")
    parser.add_argument("--base-epochs", type=int, default=8, help="its training epochs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = ProtectionSettings(
        archs=("resnet18", "vgg11"), width=8, train=TrainSettings(epochs=8, batch_size=32), seed=0
    )
    pgd = PGDSettings(eps=1.0, step=0.1, iters=20)
    for amp in args.amplitudes:
        x_train, y_train = make_phantom_slices(100, size=SIZE, seed=0)
        x_test, y_test = make_phantom_slices(30, size=SIZE, seed=1)
        x_train = add_texture(x_train, y_train, amp, seed=5)
        x_test = add_texture(x_test, y_test, amp, seed=6)
        start = time.perf_counter()
        base = build_model("resnet18", len(CLASS_NAMES), width=args.base_width, seed=1)
        base_train = cfg.train.model_copy(update={"epochs": args.base_epochs})
        train_model(base, x_train, y_train, seed=1, settings=base_train, device="cpu")
        report = evaluate_protection(
            base,
            paper_key(CLASS_NAMES, seed=0, pgd=pgd),
            x_train,
            y_train,
            x_test,
            y_test,
            settings=cfg,
            pgd=pgd,
            device="cpu",
            dataset=f"phantoms + class texture amplitude {amp}",
        )
        print(f"amplitude {amp}: {time.perf_counter() - start:.0f} s")
        print(report.to_markdown())


if __name__ == "__main__":
    main()
