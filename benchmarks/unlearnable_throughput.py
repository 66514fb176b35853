"""Throughput of the default mode, ``unlearnable``, and what ``craft`` costs.

Part 1, **encrypt** (``--sizes``): the ``Encryptor`` in mode ``unlearnable`` with the key's
defaults (20 error-minimizing steps with EOT augmentation, one restart, budget on the
anatomy, a width-16 CNN surrogate) on phantom slices at each size, against the bare-pass
bound of the same run (its 20 forward + input-gradient passes and one last forward on the
same rows, same model copy, layout and precision: ``_passes.bare_passes``), timed
round-robin. The surrogate is untrained here: its weights do not change the work. Printed:
slices/s of ``encrypt`` as a caller gets it and without PSNR/SSIM (``metrics=False``, what
the job's actor runs), the bound, the actor's ratio to it, and one ``encrypt`` call split
(by the same clock, not a profiler) into foreground masks, the crafting loop (which also
runs the EOT augmentation, forward and backward: work the bare passes do not have) and the
rest (combiner, dark floor, record metrics, copies).

Part 2, **craft** (``--craft``): ``craft_surrogate`` (the min-min loop behind ``medcrypt
craft``) on figshare-btd slices (``--data``; phantoms without it), timed for a grid of
sample size x rounds x surrogate width, each with a fixed round count (``stop_accuracy``
1.0 never stops it early unless the surrogate is perfect); per round it runs
``train_steps`` minibatch steps and ``noise_steps`` noise steps over the whole sample, so
its time should be ``rounds * (a + b * sample)`` with ``a`` and ``b`` growing with width.

Usage::

    python benchmarks/unlearnable_throughput.py --threads 1 --sizes 64,256,320 --batch 8
    python benchmarks/unlearnable_throughput.py --threads 1 --sizes '' --craft \\
        --data ../shared/data/figshare-btd --craft-samples 60,120 --craft-rounds 1,2
    python benchmarks/unlearnable_throughput.py --device cuda --sizes 64,256,320 --batch 64
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _passes import bare_passes
from _timing import interleaved_medians

from medcrypt.medical import CLASS_NAMES, make_phantom_slices
from medcrypt.processing import (
    EncryptionKey,
    Encryptor,
    MinMinSettings,
    PGDSettings,
    build_model,
    craft_surrogate,
    foreground_masks,
)
from medcrypt.processing.protection._pgd import resolve_precision


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def encrypt_rows(args: argparse.Namespace, device: torch.device) -> None:
    settings = PGDSettings(mode="unlearnable", eps=args.eps)
    key = EncryptionKey.generate(CLASS_NAMES, combiner="none", seed=0, pgd=settings)
    model = build_model("cnn", len(CLASS_NAMES), width=args.width, seed=0)
    bf16, layout = resolve_precision(settings, device)
    print(
        f"mode unlearnable: {settings.iters} steps, step {settings.step:.3f}, eps {settings.eps}, "
        f"augment {settings.augment}, restarts {settings.restarts}, foreground "
        f"{settings.foreground}; CNN width {args.width}; {'bf16' if bf16 else 'fp32'}"
        f"{' channels_last' if layout else ''}; batch {args.batch}; median of {args.repeats}, "
        f"{args.clock} clock"
    )
    print(
        "| size | encrypt slices/s | without PSNR/SSIM (the job's actor) | bare-pass bound | "
        "ratio (actor / bound) | masks | crafting | rest |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        per_class = -(-args.batch // len(CLASS_NAMES))
        images, labels = make_phantom_slices(per_class, size=size, seed=size)
        images, labels = images[: args.batch].astype(np.float32), labels[: args.batch]
        enc = Encryptor(model, key, device=str(device), settings=settings)
        assert enc.model is not None
        x = torch.from_numpy(images).unsqueeze(1).to(device)
        t = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)

        def run(enc: Encryptor = enc, images: np.ndarray = images, labels: Any = labels) -> object:
            return enc.encrypt(images, labels)

        def run_actor(
            enc: Encryptor = enc, images: np.ndarray = images, labels: Any = labels
        ) -> object:
            return enc.encrypt(images, labels, metrics=False)

        fns: dict[str, Callable[[], object]] = {
            "encrypt": run,
            "actor": run_actor,
            "bare": bare_passes([enc.model], x, t, settings.iters, bf16=bf16, channels_last=layout),
        }
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        med, _ = interleaved_medians(fns, device, args.repeats, clock)
        # one call split by the same clock: the masks alone, then the crafting loop alone
        t0 = clock()
        fg = foreground_masks(images)
        masks_s = clock() - t0
        m = torch.from_numpy(fg).unsqueeze(1).to(device, torch.float32)
        t0 = clock()
        enc._perturb(x, np.asarray(labels, dtype=np.int64), m)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        craft_s = clock() - t0
        rest_s = max(0.0, med["encrypt"] - masks_s - craft_s)
        b = len(images)
        rate, bound, actor = b / med["encrypt"], b / med["bare"], b / med["actor"]
        total = med["encrypt"]
        print(
            f"| {size} | {rate:.2f} | {actor:.2f} | {bound:.2f} | {actor / bound:.2f} | "
            f"{100 * masks_s / total:.0f}% | {100 * craft_s / total:.0f}% | "
            f"{100 * rest_s / total:.0f}% |"
        )


def _figshare(path: Path, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
    per = -(-n // len(classes))
    images, labels = [], []
    for c, name in enumerate(classes):
        for png in sorted((path / "train" / name).glob("*.png"))[:per]:
            with Image.open(png) as im:
                grey = im.convert("L").resize((size, size), Image.Resampling.BOX)
            images.append(np.asarray(grey, dtype=np.float32) / 255.0)
            labels.append(c)
    order = np.random.default_rng(0).permutation(len(images))[:n]
    return np.stack(images)[order], np.asarray(labels, dtype=np.int64)[order]


def craft_rows(args: argparse.Namespace, device: torch.device) -> None:
    settings = PGDSettings(mode="unlearnable", eps=args.eps)
    print(
        f"craft_surrogate at {args.craft_size}x{args.craft_size}: train_steps 20, "
        f"noise_steps 10, batch 64 (MinMinSettings' defaults), fixed round counts, "
        f"{args.clock} clock"
    )
    print("| sample | rounds | width | seconds | s per round | s per round per 100 slices |")
    print("|---|---|---|---|---|---|")
    for n in args.craft_samples:
        if args.data is not None:
            images, labels = _figshare(args.data, n, args.craft_size)
            n_classes = int(labels.max()) + 1
        else:
            images, labels = make_phantom_slices(-(-n // 5), size=args.craft_size, seed=1)
            images, labels = images[:n], labels[:n]
            n_classes = len(CLASS_NAMES)
        masks = foreground_masks(images)
        for width in args.craft_widths:
            for rounds in args.craft_rounds:
                mm = MinMinSettings(width=width, max_rounds=rounds, stop_accuracy=1.0)
                clock = time.process_time if args.clock == "cpu" else time.perf_counter
                t0 = clock()
                res = craft_surrogate(
                    images,
                    labels,
                    n_classes=n_classes,
                    settings=settings,
                    minmin=mm,
                    masks=masks,
                    device=str(device),
                )
                sec = clock() - t0
                per = sec / res.rounds
                print(
                    f"| {len(images)} | {res.rounds} | {width} | {sec:.1f} | {per:.2f} | "
                    f"{100 * per / len(images):.2f} |"
                )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--sizes", type=_ints, default=[64, 256, 320], help="slice sides, '' = none")
    ap.add_argument("--batch", type=int, default=8, help="slices per encrypt call")
    ap.add_argument("--width", type=int, default=16, help="surrogate width (the default 16)")
    ap.add_argument("--eps", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU seconds (time.process_time), for a crowded CPU host",
    )
    ap.add_argument("--craft", action="store_true", help="also time craft_surrogate")
    ap.add_argument("--data", type=Path, default=None, help="figshare-btd folder for --craft")
    ap.add_argument("--craft-size", type=int, default=64)
    ap.add_argument("--craft-samples", type=_ints, default=[60, 120])
    ap.add_argument("--craft-rounds", type=_ints, default=[1, 2])
    ap.add_argument("--craft-widths", type=_ints, default=[16])
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}")
    if args.sizes:
        encrypt_rows(args, device)
    if args.craft:
        craft_rows(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
