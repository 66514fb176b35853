"""Issue 19's measurement: does error-minimizing ("unlearnable") noise protect figshare-btd?

For every row (a way of making the release, see ``_unlearnable_rows.py``), PSNR target and
seed: craft the release of the train and test splits, then train a victim of every family
(``--archs``, default a plain BN CNN, ResNet-18 and VGG-11) from scratch on the train release
and score it after every epoch on the *clean* test split (protection: peak and final balanced
accuracy) and on the test *release* (release-on-itself: is the release still a task). The
clean row is the same-run baseline. PSNR and SSIM are measured over the whole slice, over the
foreground and inside the tumour box (where doctors look).

    python benchmarks/protection_unlearnable.py --rows clean,ue --psnr 35 --seeds 0,1,2 \
        --out benchmarks/results/unlearnable
    python benchmarks/protection_unlearnable.py --summarize benchmarks/results/unlearnable

``--linf-caps 0,16,12,8`` repeats every non-clean row with a per-pixel cap of that many 8-bit
levels beside the L2 budget (0: none); such a row is named ``ue@cap12`` and so on.

One JSON per (row, PSNR, seed) under ``--out`` (a finished one is skipped when run again), so
several invocations can share the work (e.g. in parallel on one GPU). ``--counter`` runs the
counter-attacks on one row's release, each beside the same counter-attack on the clean split.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _figshare import DATA, Figshare, load_boxes, load_figshare
from _frontier import perceptual
from _unlearnable_rows import ROWS, Spec, build_row, eps_for_psnr
from skimage.metrics import structural_similarity

from medcrypt.processing import TrainSettings
from medcrypt.processing.assessment._counter import (
    CounterAttack,
    adversarial_hook,
    apply_counter_attack,
    mix_clean,
    orthogonal_projection,
)
from medcrypt.processing.assessment._ssl import contrastive_probe
from medcrypt.processing.assessment._victims import fit_victim, thief_settings
from medcrypt.processing.protection._unlearnable import MinMinSettings

ROOT = Path(__file__).resolve().parents[1]
COUNTERS = {
    "jpeg10": CounterAttack(name="jpeg10", kind="jpeg", value=10),
    "jpeg30": CounterAttack(name="jpeg30", kind="jpeg", value=30),
    "jpeg75": CounterAttack(name="jpeg75", kind="jpeg", value=75),
    "blur1": CounterAttack(name="blur1", kind="blur", value=1.0),
    "downup2": CounterAttack(name="downup2", kind="downup", value=2),
    "adv_train": CounterAttack(name="adv_train", kind="adv_train", value=3),
    "adv_half": CounterAttack(name="adv_half", kind="adv_train", value=3),  # at eps / 2
    "mix_clean10": CounterAttack(name="mix_clean10", kind="mix_clean", value=0.1),
    "mix_clean20": CounterAttack(name="mix_clean20", kind="mix_clean", value=0.2),
    "orthoproj": CounterAttack(name="orthoproj", kind="none"),  # handled here: needs labels
    "ssl": CounterAttack(name="ssl", kind="none"),  # handled here: contrastive thief + probe
}


def box_metrics(x: np.ndarray, r: np.ndarray, boxes: list[list[tuple[int, ...]]]) -> dict:
    """Mean PSNR and SSIM inside each slice's tumour box(es) (slices without a box skipped)."""
    ps, ss = [], []
    for i, bs in enumerate(boxes):
        m = np.zeros(x.shape[1:], bool)
        for x0, y0, x1, y1 in bs:
            m[y0:y1, x0:x1] = True
        if m.sum() < 4:
            continue
        mse = float(((r[i] - x[i]) ** 2)[m].mean())
        ps.append(10 * math.log10(1 / mse) if mse > 0 else math.inf)
        _, smap = structural_similarity(x[i], r[i], data_range=1.0, full=True)
        ss.append(float(smap[m].mean()))
    finite = [p for p in ps if math.isfinite(p)]
    return {
        "psnr_box": float(np.mean(finite)) if finite else math.inf,
        "ssim_box": float(np.mean(ss)) if ss else math.nan,
        "boxes": len(ps),
    }


def victims(
    args: argparse.Namespace,
    x: np.ndarray,
    y: np.ndarray,
    tests: dict[str, Any],
    seed: int,
    eps: float = 0.0,
    adv: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    train = TrainSettings(epochs=args.epochs, batch_size=32, shift=args.shift)
    if args.thief:  # flips, rotations, resized crops, AdamW one-cycle (issue 23)
        train = thief_settings(args.epochs, mixup=args.mixup)
    for arch in args.archs:
        t0 = time.monotonic()
        hook = adversarial_hook(eps, norm="l2", steps=3) if adv else None
        scores, _ = fit_victim(
            arch,
            x,
            y,
            tests,
            n_classes=3,
            width=args.width,
            settings=train,
            seed=seed,
            device=args.device,
            batch_hook=hook,
        )
        out[arch] = {k: v.summary() for k, v in scores.scores.items()}
        out[arch]["real"]["balanced_per_epoch"] = list(scores.scores["real"].balanced)
        real = out[arch]["real"]
        print(
            f"    {arch}: real test peak bacc {real['bacc_peak']:.3f} final "
            f"{real['bacc_final']:.3f} ({time.monotonic() - t0:.0f} s)",
            flush=True,
        )
    return out


def _git() -> str:
    """The commit this run used ("" where there is no git, e.g. a copied tree on a device)."""
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
        )
    except OSError:
        return ""
    return res.stdout.strip()


def run_one(
    args: argparse.Namespace,
    data: Any,
    boxes: Any,
    row: str,
    psnr: float,
    seed: int,
    cap: float = 0.0,
    path: Path | None = None,
) -> dict[str, Any]:
    """One row; with ``path``, the JSON is written after the victims and after each
    counter-attack (marked ``"partial"`` until the row is complete)."""
    eps = eps_for_psnr(data.x_train, psnr) if psnr > 0 else 0.0
    spec = Spec(
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
        n_classes=3,
        eps=eps,
        seed=seed,
        device=args.device,
        sample=args.sample,
        minmin=MinMinSettings(
            width=args.craft_width,
            train_steps=args.minmin_train_steps,
            noise_steps=args.minmin_noise_steps,
            max_rounds=args.max_rounds,
        ),
        noise_iters=args.noise_iters,
        craft_archs=tuple(args.craft_archs),
        base_epochs=args.epochs,
        shift=args.shift,
        linf_cap=cap / 255.0 if cap > 0 else None,
    )
    t0 = time.monotonic()
    train, test, info = build_row(row, spec)
    craft_s = time.monotonic() - t0
    result: dict[str, Any] = {
        "row": f"{row}@cap{cap:g}" if cap > 0 else row,
        "psnr_target": psnr,
        "seed": seed,
        "eps": eps,
        "craft_seconds": craft_s,
        "info": info,
        "git": _git(),
        "config": {k: str(v) for k, v in vars(args).items()},
    }
    if row != "clean":
        result["perceptual"] = {
            **perceptual(data.x_train, train),
            **box_metrics(data.x_train, train, boxes),
        }
        p = result["perceptual"]
        p["linf_max"] = float(np.abs(train - data.x_train).max())
        p["linf_median"] = float(
            np.median(np.abs(train - data.x_train).reshape(len(train), -1).max(1))
        )
        print(
            f"  {row} psnr {psnr}: eps {eps:.3f}, fg PSNR {p['psnr_fg']:.2f} dB, box "
            f"{p['psnr_box']:.2f} dB, SSIM fg {p['ssim_fg']:.4f} ({craft_s:.0f} s)",
            flush=True,
        )
    tests = {"real": (data.x_test, data.y_test), "release": (test, data.y_test)}
    result["victims"] = victims(args, train, data.y_train, tests, seed)
    if args.counter and row != "clean":
        result["counter"] = {}

        def save() -> None:
            if path is not None:
                path.write_text(json.dumps({**result, "partial": True}, indent=1))

        save()
        counters(args, data, train, tests, seed, eps, out=result["counter"], saved=save)
    return result


def counters(
    args: argparse.Namespace,
    data: Any,
    train: np.ndarray,
    tests: dict[str, Any],
    seed: int,
    eps: float,
    *,
    out: dict[str, Any],
    saved: Any,
) -> None:
    for name in args.counter:
        attack = COUNTERS[name]
        for which, imgs in (("release", train), ("clean", data.x_train)):
            if which not in args.counter_sides:
                continue
            print(f"  counter {name} on the {which} train split", flush=True)
            if name == "ssl":  # one encoder per split, the family of the first victim
                out.setdefault(name, {})[which] = contrastive_probe(
                    imgs, data.y_train, {"real": tests["real"]}, n_classes=3,
                    arch=args.archs[0], width=args.ssl_width, epochs=args.ssl_epochs, seed=seed,
                )  # fmt: skip
                continue
            if name == "orthoproj":
                x = orthogonal_projection(imgs, data.y_train, n_classes=3)
            else:
                x = apply_counter_attack(attack, imgs, clean=data.x_train, seed=seed)
            out.setdefault(name, {})[which] = victims(
                args,
                x,
                data.y_train,
                {"real": tests["real"]},
                seed,
                eps=eps / 2 if name == "adv_half" else eps,
                adv=attack.kind == "adv_train",
            )
        if attack.kind == "mix_clean":  # what the thief gets from the clean share alone
            _, idx = mix_clean(train, data.x_train, attack.value, seed=seed)
            print(f"  counter {name}: the clean share alone ({len(idx)} slices)", flush=True)
            out[name]["share_alone"] = victims(
                args, data.x_train[idx], data.y_train[idx], {"real": tests["real"]}, seed
            )
        saved()


def summarize(folder: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["row"], r["psnr_target"]), []).append(r)
    archs = sorted({a for r in rows for a in r["victims"]})
    head = ["row", "PSNR target", "seeds", "eps", "fg PSNR", "box PSNR", "fg SSIM", "box SSIM"]
    head += ["median slice Linf", "worst Linf"]
    head += [f"{a} peak / final bacc" for a in archs] + ["release-on-itself"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ms(v: list[float]) -> str:
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    def order(kv: Any) -> tuple[int, float, str]:
        name = kv[0][0]
        return (ROWS.index(name.split("@")[0]), -kv[0][1], name)

    for (row, psnr), rs in sorted(groups.items(), key=order):
        p = [r.get("perceptual", {}) for r in rs]
        cells = [row, f"{psnr:g}" if row != "clean" else "-", str(len(rs)), f"{rs[0]['eps']:.3f}"]
        for k in ("psnr_fg", "psnr_box", "ssim_fg", "ssim_box", "linf_median", "linf_max"):
            vals = [q[k] for q in p if k in q]
            cells.append(ms(vals) if vals else "-")
        own = []
        for a in archs:
            peak = [r["victims"][a]["real"]["bacc_peak"] for r in rs if a in r["victims"]]
            final = [r["victims"][a]["real"]["bacc_final"] for r in rs if a in r["victims"]]
            cells.append(f"{ms(peak)} / {ms(final)}" if peak else "-")
            own += [r["victims"][a]["release"]["bacc_peak"] for r in rs if a in r["victims"]]
        cells.append(ms(own) if own else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *counter_table(rows)]
    return "\n".join(lines)


def counter_table(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if "counter" not in r:
            continue
        out.append(
            f"Counter-attacks on {r['row']} at {r['psnr_target']:g} dB, seed {r['seed']}"
            " (peak balanced accuracy on the real test split: release / clean)"
        )
        archs = sorted(r["victims"])
        out += ["", "| attack | " + " | ".join(archs) + " |", "|---|" + "---|" * len(archs)]
        for name, by in r["counter"].items():
            if name == "ssl":  # probe balanced accuracy (final), one encoder family
                rel, cln = by["release"]["real"]["bacc"], by["clean"]["real"]["bacc"]
                out.append(f"| ssl (linear probe) | {rel:.3f} / {cln:.3f} |")
                continue
            cells = [
                f"{by['release'][a]['real']['bacc_peak']:.3f} / "
                + (f"{by['clean'][a]['real']['bacc_peak']:.3f}" if "clean" in by else "-")
                + (
                    f" (share alone {by['share_alone'][a]['real']['bacc_peak']:.3f})"
                    if "share_alone" in by
                    else ""
                )
                for a in archs
            ]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def _first(data: Figshare, boxes: list[Any], limit: int) -> tuple[Figshare, list[Any]]:
    def keep(y: np.ndarray) -> np.ndarray:
        return np.sort(np.concatenate([np.flatnonzero(y == c)[:limit] for c in np.unique(y)]))

    tr, te = keep(data.y_train), keep(data.y_test)
    small = Figshare(data.x_train[tr], data.y_train[tr], data.x_test[te], data.y_test[te])
    return small, [boxes[i] for i in tr]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    lst = lambda f: lambda s: [f(v) for v in s.split(",") if v]  # noqa: E731
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, help="folder of the reduced .npz (default: tmp)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--limit", type=int, help="images per class and split (tiny runs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=lst(str), default=["clean", "ue"])
    ap.add_argument("--psnr", type=lst(float), default=[35.0], help="foreground PSNR targets")
    ap.add_argument("--seeds", type=lst(int), default=[0])
    ap.add_argument("--archs", type=lst(str), default=["cnn", "resnet18", "vgg11"])
    ap.add_argument("--width", type=int, default=16, help="victim width")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--shift", type=int, help="victim random shift (default size/16)")
    ap.add_argument(
        "--thief",
        action="store_true",
        help="victims trained as a thief would (flips, rotations, resized crops, one-cycle)",
    )
    ap.add_argument("--mixup", type=float, default=0.0, help="with --thief: mixup alpha")
    ap.add_argument("--craft-archs", type=lst(str), default=["cnn"])
    ap.add_argument("--craft-width", type=int, default=16)
    ap.add_argument("--sample", type=float, default=0.25, help="surrogate's share of train")
    ap.add_argument("--noise-iters", type=int, default=20, help="per-case steps")
    ap.add_argument("--minmin-train-steps", type=int, default=20)
    ap.add_argument("--minmin-noise-steps", type=int, default=10)
    ap.add_argument("--max-rounds", type=int, default=15)
    ap.add_argument("--counter", type=lst(str), default=[], help=",".join(COUNTERS))
    ap.add_argument(
        "--linf-caps", type=lst(float), default=[0.0], help="per-pixel caps in 8-bit levels"
    )
    ap.add_argument(
        "--counter-sides",
        type=lst(str),
        default=["release", "clean"],
        help="release,clean: skip clean only where its baseline (same seed, deterministic) "
        "was measured in another run's JSON",
    )
    ap.add_argument("--ssl-width", type=int, default=16, help="ssl counter: encoder width")
    ap.add_argument("--ssl-epochs", type=int, default=30, help="ssl counter: pretraining epochs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/unlearnable")
    ap.add_argument("--summarize", type=Path, help="print the tables of a results folder")
    ap.add_argument("--threads", type=int, help="torch threads")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return 0
    bad = sorted(set(args.rows) - set(ROWS)) + sorted(set(args.counter) - set(COUNTERS))
    if bad:
        raise SystemExit(f"unknown rows or counter-attacks {bad}; rows: {', '.join(ROWS)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.shift = args.size // 16 if args.shift is None else args.shift
    data = load_figshare(args.data, size=args.size, cache=args.cache)
    boxes = load_boxes(args.data, size=args.size)["train"]
    if args.limit:  # the first --limit images of each class and split (from the cache)
        data, boxes = _first(data, boxes, args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    for psnr in args.psnr:
        for row in args.rows:
            for seed in args.seeds:
                target = 0.0 if row == "clean" else psnr  # one clean row per seed
                for cap in [0.0] if row == "clean" else args.linf_caps:
                    tag = f"_cap{cap:g}" if cap > 0 else ""
                    path = args.out / f"{row}_{target:g}_{seed}{tag}.json"
                    if path.is_file():
                        continue
                    print(f"{row}, {target:g} dB, seed {seed}, cap {cap:g}/255", flush=True)
                    res = run_one(args, data, boxes, row, target, seed, cap, path)
                    path.write_text(json.dumps(res, indent=1))
    print(summarize(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
