"""Where targeted-PGD time goes on one device: the whole attack vs its forward/backward passes.

Times, in one run and on the same rows (every slice repeated once per target):

* the whole ``targeted_pgd_l2`` call on the inference copy (batch norm folded);
* the same number of bare forward + input-gradient passes, folded and unfolded (the ratio is
  what folding buys), and with channels_last;
* optionally (``--compile``) the folded model under ``torch.compile`` (compile time reported
  apart).

If the bare passes take nearly all of the attack's time, the attack's own bookkeeping
(normalised step, projection, best-iterate) is not what to optimise, and no PGD
implementation that runs the same passes can be much faster than another on that device.

Usage::

    python benchmarks/pgd_breakdown.py --threads 1 --width 8 --rows 64 --iters 20
    python benchmarks/pgd_breakdown.py --device cuda --width 64 --size 320 --rows 128 --iters 20
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from _timing import interleaved_medians
from torch import nn

from medcrypt.processing import PGDSettings, build_model
from medcrypt.processing.protection._pgd import prepare_for_pgd, targeted_pgd_l2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rows", type=int, default=64, help="(slice, target) rows per batch")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU seconds (time.process_time), for a crowded CPU host",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("resnet18", 5, width=args.width, seed=0).to(device).eval()
    settings = PGDSettings(eps=1.0, step=0.1, iters=args.iters, best_iterate=True)
    folded = prepare_for_pgd(model, settings.model_copy(update={"channels_last": False}), device)
    x = torch.rand(args.rows, 1, args.size, args.size, device=device)
    t = torch.randint(0, 5, (args.rows,), device=device)

    def passes(m: nn.Module, inputs: torch.Tensor) -> Callable[[], object]:
        def run() -> None:
            for _ in range(args.iters):
                xi = inputs.detach().requires_grad_(True)
                loss = nn.functional.cross_entropy(m(xi), t)
                torch.autograd.grad(loss, xi)

        return run

    fp32 = settings.model_copy(update={"channels_last": False, "precision": "fp32"})
    cl_model = prepare_for_pgd(model, settings.model_copy(update={"channels_last": True}), device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    fns: dict[str, Callable[[], object]] = {
        "pgd": lambda: targeted_pgd_l2(folded, x, t, settings=fp32),
        "folded": passes(folded, x),
        "unfolded": passes(model, x),
        "channels_last": passes(cl_model, x_cl),
    }
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    med, _ = interleaved_medians(fns, device, args.repeats, clock)
    pgd_s, folded_s, unfolded_s, cl_s = (
        med["pgd"],
        med["folded"],
        med["unfolded"],
        med["channels_last"],
    )
    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}; "
        f"ResNet-18 width {args.width}, {args.rows} rows of {args.size}x{args.size}, "
        f"{args.iters} iterations, median of {args.repeats}"
    )
    print(f"whole PGD (folded, fp32)          : {pgd_s:8.3f} s")
    print(
        f"bare passes, folded              : {folded_s:8.3f} s  "
        f"({100 * folded_s / pgd_s:.0f}% of the whole PGD)"
    )
    print(
        f"bare passes, unfolded            : {unfolded_s:8.3f} s  "
        f"(folding: {unfolded_s / folded_s:.2f}x)"
    )
    print(f"bare passes, folded channels_last: {cl_s:8.3f} s  ({folded_s / cl_s:.2f}x)")
    if args.compile:
        t0 = time.perf_counter()
        compiled: nn.Module = torch.compile(folded)  # type: ignore[assignment]
        passes(compiled, x)()
        compile_s = time.perf_counter() - t0
        both = {"c": passes(compiled, x), "f": passes(folded, x)}
        again = interleaved_medians(both, device, args.repeats, clock)[0]
        comp_s, folded_s = again["c"], again["f"]  # round-robin with the eager passes
        print(
            f"bare passes, torch.compile       : {comp_s:8.3f} s  ({folded_s / comp_s:.2f}x; "
            f"compiling took {compile_s:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
