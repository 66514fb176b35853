"""Foreground masks of a batch: the per-image loop vs the vectorised ``foreground_masks``.

Issue 19, item 4: the foreground mask was the slow part of the model-free protection modes
(0.96 s per 256 slices at 256x256, 2.4x the PNG read). This times, round-robin so that load
drift on a shared machine hits all alike (median of ``--repeats``, one warm-up each):

* per-image: ``np.stack([foreground_mask(x) for x in batch])``, the old ``foreground_masks``;
* vectorised: ``foreground_masks(batch)``;
* read: decoding the same PNGs with Pillow into the float32 batch (the IO the mask is
  measured against; the files sit in the OS page cache after the first pass, so this is
  decoding, not disk).

It checks that both masks are identical and prints the three times, the speed-up and the
mask-to-read ratios. Slices are ``--n`` figshare-btd training PNGs spread over the classes
(``../shared/data/figshare-btd``), area-reduced to ``--size`` when it is not 256.

    python benchmarks/foreground_masks.py [--n 256] [--size 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from _figshare import DATA
from _timing import interleaved_medians
from PIL import Image

from medcrypt.processing import foreground_mask, foreground_masks


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def pick(root: Path, n: int) -> list[Path]:
    """``n`` training PNGs spread evenly over the sorted list (so over all classes)."""
    paths = sorted((root / "train").glob("*/*.png"))
    if len(paths) < n:
        raise SystemExit(f"{root}: need {n} training PNGs, found {len(paths)}")
    return [paths[i * len(paths) // n] for i in range(n)]


def read(paths: list[Path], size: int) -> np.ndarray:
    """(N, size, size) float32 in [0, 1], as benchmarks/_figshare.py reads the set."""
    out = np.empty((len(paths), size, size), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            grey = im.convert("L")
            if grey.size != (size, size):
                grey = grey.resize((size, size), Image.Resampling.BOX)
            out[i] = np.asarray(grey, dtype=np.float32) / 255.0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the figshare-btd folder")
    parser.add_argument("--n", type=_positive, default=256, help="slices (default 256)")
    parser.add_argument("--size", type=_positive, default=256, help="side in pixels")
    parser.add_argument("--repeats", type=_positive, default=5, help="timed runs per side")
    args = parser.parse_args(argv)

    paths = pick(args.data, args.n)
    batch = read(paths, args.size)
    fns = {
        "per-image": lambda: np.stack([foreground_mask(x) for x in batch]),
        "vectorised": lambda: foreground_masks(batch),
        "read": lambda: read(paths, args.size),
    }
    t, out = interleaved_medians(fns, torch.device("cpu"), args.repeats)
    per_image, vectorised = np.asarray(out["per-image"]), np.asarray(out["vectorised"])
    if not np.array_equal(per_image, vectorised):
        raise SystemExit("the vectorised masks differ from the per-image ones")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{args.n} slices of {args.size}x{args.size}, median of {args.repeats} "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load {load:.1f}); "
        f"masks identical, {vectorised.mean():.1%} foreground"
    )
    print(f"per-image   {t['per-image']:.3f} s  ({t['per-image'] / t['read']:.2f}x the read)")
    print(f"vectorised  {t['vectorised']:.3f} s  ({t['vectorised'] / t['read']:.2f}x the read)")
    print(f"PNG read    {t['read']:.3f} s")
    print(f"speed-up    {t['per-image'] / t['vectorised']:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
