"""bf16 autocast vs fp32 for PGD's own passes (forward + input gradient) on this device.

The passes are nearly all of PGD's time (``pgd_breakdown.py``), so their ratio is what
``precision="auto"`` buys where it picks bf16: CUDA, and CPUs with native bf16 (AMX /
AVX512-BF16). The model is the PGD copy (batch norm folded, channels_last); both precisions
are timed alternately in the same run. Also printed: the mean cosine similarity of the bf16
input gradient to the fp32 one (PGD follows the normalised gradient, so direction is what
matters).

Usage::

    python benchmarks/bf16_passes.py --threads 1
    python benchmarks/bf16_passes.py --device cuda --configs 64x320x64
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch
from _timing import interleaved_medians

from medcrypt.processing import PGDSettings, build_model, prepare_for_pgd
from medcrypt.processing.protection._pgd import resolve_precision


def _config(text: str) -> tuple[int, int, int]:
    try:
        width, size, rows = (int(v) for v in text.split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected WIDTHxSIZExROWS, got {text!r}") from err
    return width, size, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--configs",
        type=_config,
        nargs="+",
        default=[(8, 64, 64), (16, 64, 64), (64, 64, 64), (64, 128, 16)],
        help="ResNet-18 WIDTHxSIZExROWS to time (default: 8x64x64 16x64x64 64x64x64 64x128x16)",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    native, _ = resolve_precision(PGDSettings(), device)  # what precision="auto" picks here
    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
        f"native bf16: {native}; median of {args.repeats}, timed alternately"
    )
    gen = torch.Generator().manual_seed(0)
    for width, size, rows in args.configs:
        model = prepare_for_pgd(
            build_model("resnet18", 5, width=width, seed=0), PGDSettings(), device
        )
        x0 = torch.rand(rows, 1, size, size, generator=gen).to(device)
        x0 = x0.contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, 5, (rows,), generator=gen).to(device)

        def passes(
            bf16: bool, model: torch.nn.Module = model, x0: torch.Tensor = x0, t: torch.Tensor = t
        ) -> torch.Tensor:
            x = x0.clone().requires_grad_(True)
            ctx = (
                torch.autocast(device.type, dtype=torch.bfloat16)
                if bf16
                else contextlib.nullcontext()
            )
            with ctx:
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), t)
            (grad,) = torch.autograd.grad(loss, x)
            return grad

        med, outs = interleaved_medians(
            {"fp32": lambda: passes(False), "bf16": lambda: passes(True)}, device, args.repeats
        )
        g32, g16 = outs["fp32"], outs["bf16"]
        assert isinstance(g32, torch.Tensor) and isinstance(g16, torch.Tensor)
        cos = torch.nn.functional.cosine_similarity(g32.flatten(1), g16.flatten(1).float()).mean()
        print(
            f"ResNet-18 width {width:3d}, {rows:3d} rows of {size}x{size}: fp32 "
            f"{med['fp32'] * 1e3:7.1f} ms, bf16 {med['bf16'] * 1e3:7.1f} ms, "
            f"ratio {med['fp32'] / med['bf16']:.2f}x, gradient cosine {cos:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
