"""Throughput of medcrypt's batched targeted L2 PGD against torchattacks' ``PGDL2``.

Both attack the same model, the same slices and the same targets in one run, with the same
eps, step and iteration count (no random start on either side):

* **medcrypt**: ``Encryptor.encrypt`` - every target of every slice in ONE batched PGD
  (one forward/backward per iteration for all rows), parameters frozen, then the key's
  combiner; channels_last by default (``--channels-last off`` to compare), and its default
  ``precision="auto"``: bf16 autocast on CUDA and on CPUs with native bf16 (AMX /
  AVX512-BF16), fp32 elsewhere (``--precision fp32`` to compare like with like).
* **torchattacks**: ``PGDL2`` in targeted mode (``set_mode_targeted_by_label``), fp32, called
  once per target position (a batch of slices per call), which is how its API is used.

Like for like: torchattacks perturbs the whole slice, so medcrypt runs with
``foreground=False`` here too (its product default confines the budget to the anatomy, a
smaller and different problem with lower success); ``--foreground both`` adds that product
setting as a separate row, timed in the same round-robin.

Printed: slices/s for both, the ratio, both targeted success rates (fraction of per-target
PGD outputs the model classifies as their target) with whether they are equal within noise
(two binomial standard errors of the difference), and the **bare-pass bound** of the same
run: the attack's forward + input-gradient passes alone (``_passes.bare_passes``, same rows,
model copy, layout and precision), at medcrypt's precision and in fp32 (torchattacks'), and
what share of ``encrypt`` is not passes. ``--profile`` adds a cProfile of one ``encrypt``
call split into passes, the rest of the PGD loop, foreground masks, record metrics, combiner
and the rest.

torchattacks is a benchmark-only dependency. Its PyPI metadata pulls torchvision and an old
``requests`` pin, neither of which it needs for ``PGDL2``, so install it without them::

    pip install --no-deps torchattacks==3.5.1

Usage::

    python benchmarks/pgd_throughput.py                      # CPU, 64x64 phantoms, small ResNet-18
    python benchmarks/pgd_throughput.py --device cuda --paper  # ResNet-18, 320x320, 2 targets,
                                                               # 100 iterations, bf16 vs fp32
    python benchmarks/pgd_throughput.py --precision fp32      # both sides fp32
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from _passes import bare_passes
from _timing import interleaved_medians

from medcrypt.medical import CLASS_NAMES, make_phantom_slices
from medcrypt.processing import (
    Encryptor,
    PGDSettings,
    TrainSettings,
    build_model,
    predict,
    train_model,
)
from medcrypt.processing.assessment._evaluation import paper_key
from medcrypt.processing.protection._pgd import cpu_has_native_bf16, resolve_precision


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    ap.add_argument(
        "--paper",
        action="store_true",
        help="paper settings: ResNet-18 width 64, 320x320, 2 targets, 100 iterations, "
        "bf16 + channels_last for medcrypt (CUDA), fp32 for torchattacks",
    )
    ap.add_argument("--size", type=int, default=64, help="slice side in pixels")
    ap.add_argument("--width", type=int, default=16, help="model width (64 = ResNet-18)")
    ap.add_argument("--batch", type=int, default=32, help="slices per batch")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--eps", type=float, default=1.0)
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-epochs", type=int, default=4, help="0 = untrained model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="medcrypt's memory format (auto: PGDSettings' default for the device)",
    )
    ap.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="medcrypt's PGD precision (auto: bf16 on CUDA and on bf16-native CPUs); "
        "torchattacks always runs fp32",
    )
    ap.add_argument(
        "--foreground",
        choices=("off", "both"),
        default="off",
        help="off: medcrypt perturbs the whole slice, like torchattacks; both: also time "
        "medcrypt's product default (budget on the anatomy only) as a separate row",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile one encrypt call")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU seconds (time.process_time), for a crowded CPU host",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.paper:
        args.size, args.width, args.iters, args.eps, args.step = 320, 64, 100, 2.0, 0.1
        args.batch = 64 if args.batch == 32 else args.batch
    try:
        import torchattacks
    except ImportError:
        print("torchattacks is missing: pip install --no-deps torchattacks==3.5.1")
        return 2

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(args.seed)
    n_classes = len(CLASS_NAMES)
    per_class = max(1, -(-args.batch // n_classes))
    images, labels = make_phantom_slices(per_class, size=args.size, seed=args.seed)
    images, labels = images[: args.batch], labels[: args.batch]
    model = build_model("resnet18", n_classes, width=args.width, seed=args.seed)
    if args.train_epochs > 0:
        train_x, train_y = make_phantom_slices(40, size=args.size, seed=args.seed + 100)
        train_model(
            model,
            train_x,
            train_y,
            seed=args.seed,
            settings=TrainSettings(epochs=args.train_epochs, batch_size=32),
            device=str(device),
        )
    model.to(device).eval()
    precision = args.precision
    settings = PGDSettings(
        eps=args.eps,
        step=args.step,
        iters=args.iters,
        best_iterate=False,  # torchattacks returns the last iterate
        foreground=False,  # torchattacks perturbs the whole slice
        precision=precision,
        channels_last=None if args.channels_last == "auto" else args.channels_last == "on",
    )
    key = paper_key(CLASS_NAMES, seed=args.seed, pgd=settings)
    targets = np.array([key.targets[int(y)] for y in labels], dtype=np.int64)  # (B, 2)
    n_targets = targets.shape[1]

    # medcrypt: one Encryptor call; success measured on its per-target PGD outputs.
    encryptor = Encryptor(model, key, device=str(device), settings=settings)

    # torchattacks on an fp32, contiguous copy of the same model (same weights).
    ref_model = build_model("resnet18", n_classes, width=args.width, seed=args.seed)
    ref_model.load_state_dict(model.state_dict())
    ref_model.to(device).eval()
    atk = torchattacks.PGDL2(
        ref_model, eps=args.eps, alpha=args.step, steps=args.iters, random_start=False
    )
    atk.set_mode_targeted_by_label(quiet=True)
    x = torch.from_numpy(images).unsqueeze(1).to(device)
    t = torch.from_numpy(targets).to(device)

    def run_ref() -> list[torch.Tensor]:
        return [atk(x, t[:, k]) for k in range(n_targets)]

    bf16, layout = resolve_precision(settings, device)
    # the bare-pass bound on the rows the Encryptor's PGD runs: each slice once per target
    rows_x = x.repeat_interleave(n_targets, dim=0)
    rows_t = t.reshape(-1)
    assert encryptor.model is not None
    fns = {
        "ours": lambda: encryptor.encrypt(images, labels),
        "ref": run_ref,
        "bare": bare_passes(
            [encryptor.model], rows_x, rows_t, args.iters, bf16=bf16, channels_last=layout
        ),
    }
    if bf16:
        fns["bare_fp32"] = bare_passes(
            [encryptor.model], rows_x, rows_t, args.iters, bf16=False, channels_last=layout
        )
    if args.foreground == "both":
        fg_enc = Encryptor(
            model,
            key,
            device=str(device),
            settings=settings.model_copy(update={"foreground": True}),
        )
        fns["ours_fg"] = lambda: fg_enc.encrypt(images, labels)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    med, outs = interleaved_medians(fns, device, args.repeats, clock)
    ours_s, ours_out, ref_s, ref_out = med["ours"], outs["ours"], med["ref"], outs["ref"]
    ours_success = float(np.mean(ours_out.target_success))  # type: ignore[attr-defined]
    with torch.no_grad():
        ref_adv: list[torch.Tensor] = ref_out  # type: ignore[assignment]
        hits = [
            (predict(ref_model, adv, device=str(device)) == targets[:, k])
            for k, adv in enumerate(ref_adv)
        ]
    ref_success = float(np.mean(np.concatenate(hits)))

    b = len(images)
    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
        f"torchattacks {torchattacks.__version__}"
    )
    if not cuda:
        print(f"CPU native bf16 (AMX / AVX512-BF16): {cpu_has_native_bf16()}")
    print(
        f"ResNet-18 width {args.width}, {b} slices of {args.size}x{args.size}, "
        f"{n_targets} targets each, {args.iters} iterations, eps {args.eps}, step {args.step}; "
        f"medcrypt {'bf16' if bf16 else 'fp32'}{' channels_last' if layout else ''} "
        f"(precision={precision}), "
        f"torchattacks fp32; median of {args.repeats}, timed alternately, {args.clock} clock"
    )
    ours_rate, ref_rate = b / ours_s, b / ref_s
    print(f"medcrypt Encryptor : {ours_rate:9.2f} slices/s  targeted success {ours_success:.3f}")
    print(f"torchattacks PGDL2 : {ref_rate:9.2f} slices/s  targeted success {ref_success:.3f}")
    print(f"ratio (medcrypt / torchattacks): {ours_rate / ref_rate:.2f}x")
    n_out = b * n_targets
    p = (ours_success + ref_success) / 2
    se = math.sqrt(max(2 * p * (1 - p) / n_out, 1e-12))
    gap = ours_success - ref_success
    verdict = "equal within noise" if abs(gap) <= 2 * se else "NOT equal within noise"
    print(
        f"success: {verdict} (difference {gap:+.3f}, 2 binomial SE of it {2 * se:.3f}, "
        f"{n_out} outcomes a side)"
    )
    bare_rate = b / med["bare"]
    print(
        f"bare-pass bound ({'bf16' if bf16 else 'fp32'}): {bare_rate:9.2f} slices/s  "
        f"(medcrypt at {ours_rate / bare_rate:.2f}x of it; {100 * (1 - med['bare'] / ours_s):.0f}% "
        "of encrypt is not passes)"
    )
    if "bare_fp32" in med:
        f32 = b / med["bare_fp32"]
        print(
            f"bare-pass bound (fp32): {f32:9.2f} slices/s  (torchattacks at {ref_rate / f32:.2f}x "
            "of it)"
        )
    else:
        print(f"torchattacks at {ref_rate / bare_rate:.2f}x of the fp32 bound")
    if "ours_fg" in med:
        fg_out = outs["ours_fg"]
        fg_success = float(np.mean(fg_out.target_success))  # type: ignore[attr-defined]
        print(
            f"medcrypt, foreground only (product default): {b / med['ours_fg']:9.2f} slices/s  "
            f"targeted success {fg_success:.3f} (budget on the anatomy only: not comparable "
            "with torchattacks, which perturbs the whole slice)"
        )
    if args.profile:
        _profile(lambda: encryptor.encrypt(images, labels), clock)
    return 0


#: (label, function names) whose cumulative cProfile time is reported; the first match wins
_PARTS = (
    ("foreground masks", ("foreground_masks",)),
    ("record metrics", ("batch_metrics", "psnr", "ssim")),
    ("combiner", ("combine",)),
)


def _profile(fn: object, clock: Callable[[], float]) -> None:
    """One call of ``fn`` under cProfile (timed by ``clock``): seconds in the model passes
    (module calls and autograd.grad inside the PGD loop), the rest of the loop, masks,
    metrics, combiner. cProfile's own overhead lands on the many small calls of the loop's
    bookkeeping, so read "rest of the loop" as an upper bound."""
    prof = cProfile.Profile(clock)
    prof.runcall(fn)  # type: ignore[arg-type]
    st = pstats.Stats(prof)
    raw = st.stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, name), (_, _, _, ct, _) in raw.items() if name == "encrypt")

    def cum(names: tuple[str, ...]) -> float:
        return sum(ct for (_, _, name), (_, _, _, ct, _) in raw.items() if name in names)

    loop = cum(("targeted_pgd_l2", "craft_poison"))
    grads = cum(("grad",))  # torch.autograd.grad: the backward passes
    # forward passes: the model's call as the PGD loop makes it (an fx GraphModule's
    # call_wrapped for a folded copy, else the module call), timed per caller by cProfile
    fwd = sum(
        cct
        for (path, _, name), (_, _, _, _, callers) in raw.items()
        if name in ("call_wrapped", "_wrapped_call_impl") and "torch" in path
        for (_, _, caller), (_, _, _, cct) in callers.items()
        if caller in ("targeted_pgd_l2", "losses")
    )
    print(f"cProfile of one encrypt call: {total:.3f} s")
    print(f"  PGD loop            {loop:7.3f} s ({100 * loop / total:4.1f}%)")
    print(f"    model passes      {fwd + grads:7.3f} s ({100 * (fwd + grads) / total:4.1f}%)")
    other = loop - fwd - grads
    print(f"    rest of the loop  {other:7.3f} s ({100 * other / total:4.1f}%)")
    rest = total - loop
    for label, names in _PARTS:
        sec = cum(names)
        rest -= sec
        print(f"  {label:<19} {sec:7.3f} s ({100 * sec / total:4.1f}%)")
    print(f"  the rest           {rest:7.3f} s ({100 * rest / total:4.1f}%)")


if __name__ == "__main__":
    sys.exit(main())
