"""Protection on real tumour-type MRI (figshare-btd): the frontier, counter-attacks, key recovery.

The paper's protocol (Table 12, ``encrypt_splits`` of ``medcrypt evaluate``): the training split
is encrypted with its true labels, the test split with the base model's predicted labels, both
quantised as released. Fresh victims of two families (ResNet-18, VGG-11), trained from scratch
with shift augmentation, are scored after every epoch on the original and the encrypted test
set by accuracy and balanced accuracy (the test majority class is 44%), final and peak, beside
clean-trained victims of the same seeds. The set's own patient-level split is used.

Three parts, one command each (each writes ``<out>/<part>.json`` after every row, and Markdown):

- ``frontier``: every mode at four budgets aimed at 45/40/35/30 dB *foreground* PSNR (eps per
  mode from a calibration crafting on 48 training slices; the measured PSNR is what is
  reported and plotted), plus ``frontier.png``;
- ``counter``: the counter-attack audit (``audit_counter_attacks``) on each mode's release at
  the budget aimed at ``--counter-psnr``;
- ``keys``: the paper's enumeration attacker (``audit_key_recovery``) against a basic
  (one target) and a combined (concat) ``paper`` key at ``--counter-psnr``.

Usage (the sweep recorded in benchmarks/README.md)::

    python benchmarks/protection_figshare.py --part frontier --out benchmarks/results/figshare
    python benchmarks/protection_figshare.py --part counter --out benchmarks/results/figshare
    python benchmarks/protection_figshare.py --part keys --out benchmarks/results/figshare
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _figshare import DATA, Figshare, load_figshare
from _frontier import (
    counter_markdown,
    frontier_markdown,
    key_recovery_markdown,
    perceptual,
    plot_frontier,
    write_json,
)

from medcrypt.processing import EncryptionKey, PGDSettings, TrainSettings, audit_key_recovery
from medcrypt.processing.assessment._counter import DEFAULT_COUNTER_ATTACKS, audit_counter_attacks
from medcrypt.processing.assessment._evaluation import encrypt_splits
from medcrypt.processing.assessment._victims import VictimScores, fit_victim

ROOT = Path(__file__).resolve().parents[1]

#: mode name -> (PGDSettings fields, combiner). ``norm`` of the poison modes comes from
#: ``--poison-norm``; iterations and restarts from the command line.
MODES: dict[str, tuple[dict[str, Any], str]] = {
    "paper": ({"mode": "paper", "foreground": False}, "concat"),
    "paper_fg": ({"mode": "paper", "foreground": True}, "concat"),
    "poison": ({"mode": "poison", "foreground": True}, "none"),
    "shortcut": ({"mode": "shortcut", "foreground": True}, "none"),
    "shortcut+poison": ({"mode": "shortcut+poison", "foreground": True}, "none"),
}


class Run:
    """Data, base model and settings shared by every row of one invocation."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self._calibration: dict[str, tuple[float, float]] = {}
        self.data: Figshare = load_figshare(args.data, size=args.size, limit=args.limit)
        self.n_classes = len(self.data.class_names)
        self.train = TrainSettings(epochs=args.epochs, batch_size=32, shift=args.shift)
        d = self.data
        base_train = TrainSettings(epochs=args.base_epochs, batch_size=32, shift=args.shift)
        scores, self.base = fit_victim(
            args.base_arch,
            d.x_train,
            d.y_train,
            {"test": (d.x_test, d.y_test)},
            n_classes=self.n_classes,
            width=args.base_width,
            settings=base_train,
            seed=1,
            device=args.device,
        )
        s = scores.scores["test"]
        self.base_info = {
            "arch": args.base_arch,
            "width": args.base_width,
            "epochs": args.base_epochs,
            "acc": s.acc_final,
            "bacc": s.bacc_final,
        }
        print(f"base model: test acc {s.acc_final:.3f}, balanced {s.bacc_final:.3f}", flush=True)

    def left(self) -> float:
        """Seconds before the deadline."""
        return self.args.deadline * 60 - (time.monotonic() - self.t0)

    def settings(self, mode: str, eps: float) -> tuple[PGDSettings, str]:
        fields, combiner = MODES[mode]
        a = self.args
        extra: dict[str, Any] = {}
        iters = a.iters
        if "poison" in fields["mode"]:
            extra = {"norm": a.poison_norm, "restarts": a.restarts}
            iters = a.poison_iters
        return (
            PGDSettings(eps=eps, step=2.5 * eps / iters, iters=iters, **fields, **extra),
            combiner,
        )

    def key(self, mode: str, eps: float, combiner: str | None = None) -> EncryptionKey:
        pgd, default = self.settings(mode, eps)
        names = self.data.class_names
        chosen = combiner or self.args.combiner or default
        # a fixed secret: the shortcut pattern is drawn from it, so a fresh one per key would
        # make every row (and its calibration) a different pattern
        secret = hashlib.sha256(b"protection_figshare seed 0").hexdigest()
        return EncryptionKey.generate(names, combiner=chosen, seed=0, pgd=pgd, secret=secret)

    def release(self, key: EncryptionKey, n: int | None = None) -> dict[str, Any]:
        d = self.data
        xs = d.x_train if n is None else d.x_train[:n]
        ys = d.y_train if n is None else d.y_train[:n]
        xt = d.x_test if n is None else d.x_test[: max(1, n // 4)]
        sp = encrypt_splits(self.base, key, xs, ys, xt, device=self.args.device, settings=key.pgd)
        return {
            "splits": sp,
            "perceptual_train": perceptual(xs, sp.train_images),
            "perceptual_test": perceptual(xt, sp.test_images),
            "target_success": sp.train_perceptual.target_success,
        }

    def eps_for(self, mode: str, target: float) -> float:
        """eps aimed at ``target`` foreground PSNR: PSNR falls by 20 log10 of the eps ratio.

        One calibration crafting per mode on 48 training slices at a reference budget.
        """
        if mode not in self._calibration:
            eps0 = 8 / 255 if "poison" in mode and self.args.poison_norm == "linf" else 1.0
            p0 = self.release(self.key(mode, eps0), n=48)["perceptual_train"]["psnr_fg"]
            self._calibration[mode] = (eps0, p0)
            print(f"{mode}: eps {eps0:.4g} gives {p0:.2f} dB foreground PSNR", flush=True)
        eps0, p0 = self._calibration[mode]
        return float(eps0 * 10 ** ((p0 - target) / 20))

    def victims(self, train_x: np.ndarray, tests: dict[str, Any]) -> dict[str, VictimScores]:
        out = {}
        for arch in self.args.archs:
            out[arch], _ = fit_victim(
                arch,
                train_x,
                self.data.y_train,
                tests,
                n_classes=self.n_classes,
                width=self.args.width,
                settings=self.train,
                seed=0,
                device=self.args.device,
            )
        return out


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def _git() -> dict[str, Any]:
    """The commit this run used and the files that differed from it (a shared tree moves)."""

    def git(*cmd: str) -> str:
        res = subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=ROOT, check=False)
        return res.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "modified": git("status", "--porcelain").split("\n"),
    }


#: settings a resumed result must share with this run (``--modes``, ``--psnr`` may differ)
_SHARED = ("size", "limit", "iters", "poison_iters", "restarts", "poison_norm", "archs",
           "width", "epochs", "shift", "base_arch", "base_width", "base_epochs", "combiner",
           "counter_psnr", "counters")  # fmt: skip


def _resume(path: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """With ``--resume``, the earlier result in ``path`` (refused if made with other settings)."""
    if not args.resume or not path.is_file():
        return None
    old: dict[str, Any] = json.loads(path.read_text())
    new = _config(args)
    diff = [k for k in _SHARED if old["config"].get(k) != new.get(k)]
    if diff:
        raise SystemExit(f"{path}: made with other settings {diff}; drop --resume or change --out")
    return old


def _start(run: Run, path: Path, empty: dict[str, Any]) -> dict[str, Any]:
    result = _resume(path, run.args) or {
        "config": _config(run.args),
        "base": run.base_info,
        **empty,
    }
    if result["base"] != run.base_info:
        raise SystemExit(
            f"{path}: its base model scored {result['base']}, this run's {run.base_info}"
        )
    result.setdefault("runs", []).append({"args": _config(run.args), "git": _git()})
    return result


def _chance(y: np.ndarray, n: int) -> dict[str, float]:
    return {"majority": float(np.bincount(y, minlength=n).max() / len(y)), "balanced": 1 / n}


def _clean(run: Run) -> dict[str, dict[str, float]]:
    d = run.data
    clean = run.victims(d.x_train, {"original_test": (d.x_test, d.y_test)})
    return {a: v.scores["original_test"].summary() for a, v in clean.items()}


def part_frontier(run: Run, out: Path) -> None:
    a, d = run.args, run.data
    result = _start(run, out / "frontier.json", {"rows": []})
    result["chance"] = _chance(d.y_test, run.n_classes)
    if "clean" not in result:
        result["clean"] = _clean(run)
    write_json(out / "frontier.json", result)
    done = {(r["mode"], r["target_psnr_fg"]) for r in result["rows"]}
    for mode, target in [(m, t) for m in a.modes for t in a.psnr if (m, t) not in done]:
        if run.left() < 0:
            print(f"deadline: stopping before {mode} at {target} dB", flush=True)
            result["stopped_early"] = True
            write_json(out / "frontier.json", result)
            return
        eps = run.eps_for(mode, target)
        t = time.monotonic()
        key = run.key(mode, eps)
        rel = run.release(key)
        sp = rel.pop("splits")
        tests = {
            "original_test": (d.x_test, d.y_test),
            "encrypted_test": (sp.test_images, d.y_test),
        }
        victims = run.victims(sp.train_images, tests)
        row = {
            "mode": mode,
            "target_psnr_fg": target,
            "eps": eps,
            "norm": key.pgd.norm,
            "combiner": key.combiner,
            "pgd": key.pgd.model_dump(),
            **rel,
            "victims": {},
        }
        for arch, v in victims.items():
            o, e = v.scores["original_test"], v.scores["encrypted_test"]
            clean_final = result["clean"][arch]["acc_final"]
            row["victims"][arch] = {
                "original_test": o.summary(),
                "encrypted_test": e.summary(),
                "relative": round(e.acc_final / clean_final, 4),
                "history": v.model_dump()["scores"],
            }
        row["seconds"] = round(time.monotonic() - t)
        result["rows"].append(row)
        write_json(out / "frontier.json", result)
        (out / "frontier.md").write_text(frontier_markdown(result))
        plot_frontier(result, out / "frontier.png")
        brief = {k: v["original_test"]["bacc_peak"] for k, v in row["victims"].items()}
        print(
            f"{mode} eps {eps:.4g}: fg PSNR {rel['perceptual_train']['psnr_fg']:.2f} dB, "
            f"peak balanced {brief}, {row['seconds']} s",
            flush=True,
        )


def part_counter(run: Run, out: Path) -> None:
    a, d = run.args, run.data
    result = _start(run, out / "counter.json", {"counter": {}})
    attacks = [c for c in DEFAULT_COUNTER_ATTACKS if c.name in a.counters]
    clean: tuple[VictimScores, ...] | None = None
    for earlier in result["counter"].values():
        clean = tuple(VictimScores.model_validate(v) for v in earlier["audit"]["clean"])
    for mode in [m for m in a.modes if m not in result["counter"]]:
        if run.left() < 0:
            result["stopped_early"] = True
            break
        eps = run.eps_for(mode, a.counter_psnr)
        key = run.key(mode, eps)
        rel = run.release(key)
        sp = rel.pop("splits")
        audit = audit_counter_attacks(
            sp.train_images,
            d.y_train,
            d.x_test,
            d.y_test,
            eps=eps,
            norm=key.pgd.norm,
            n_classes=run.n_classes,
            clean=d.x_train,
            attacks=attacks,
            archs=a.archs,
            width=a.width,
            train=run.train,
            clean_baselines=clean,
            device=a.device,
        )
        clean = audit.clean
        result["counter"][mode] = {
            "eps": eps,
            "psnr_fg": rel["perceptual_train"]["psnr_fg"],
            "perceptual_train": rel["perceptual_train"],
            "audit": audit.model_dump(),
            "markdown": audit.to_markdown(),
        }
        write_json(out / "counter.json", result)
        (out / "counter.md").write_text(counter_markdown(result))
        print(audit.to_markdown(), flush=True)


def part_keys(run: Run, out: Path) -> None:
    a, d = run.args, run.data
    result = _start(run, out / "keys.json", {"key_recovery": []})
    result["key_recovery"] = [k for k in result["key_recovery"] if k["mode"] not in a.key_modes]
    attacker_x, attacker_y = d.x_test, d.y_test
    per_class = [np.flatnonzero(attacker_y == c)[: a.attacker_n] for c in range(run.n_classes)]
    keep = np.concatenate(per_class)
    tests = {"original_test": (d.x_test, d.y_test)}
    # M2: the attacker's own model on labelled originals (the clean training split)
    _, m2 = fit_victim(
        "resnet18", d.x_train, d.y_train, tests, n_classes=run.n_classes, width=a.width,
        settings=run.train, seed=2, device=a.device,
    )  # fmt: skip
    for mode in a.key_modes:
        for name, combiner in (("basic", "none"), ("combined", "concat")):
            if run.left() < 0:
                result["stopped_early"] = True
                break
            eps = run.eps_for(mode, a.counter_psnr)
            key = run.key(mode, eps, combiner)
            rel = run.release(key)
            sp = rel.pop("splits")
            enc_tests = {"encrypted_test": (sp.test_images, d.y_test)}
            v1, m1 = fit_victim(
                "resnet18", sp.train_images, d.y_train, enc_tests, n_classes=run.n_classes,
                width=a.width, settings=run.train, seed=0, device=a.device,
            )  # fmt: skip
            audit = audit_key_recovery(
                m1, m2, key, attacker_x[keep], attacker_y[keep], device=a.device
            )
            result["key_recovery"].append(
                {
                    "key": name,
                    "mode": mode,
                    "eps": eps,
                    "psnr_fg": rel["perceptual_train"]["psnr_fg"],
                    "m1_encrypted_test": v1.scores["encrypted_test"].acc_final,
                    "candidates": audit.n_candidates_per_class,
                    "recovered": sum(c.recovered for c in audit.classes),
                    "recovery_rate": audit.recovery_rate,
                    "classes": [
                        {"true_rank": c.true_rank, "recovered": c.recovered} for c in audit.classes
                    ],
                    "audit": audit.model_dump(),
                }
            )
            write_json(out / "keys.json", result)
            (out / "keys.md").write_text(key_recovery_markdown(result))
            print(key_recovery_markdown(result), flush=True)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        msg = f"expected numbers separated by commas: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _names(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"expected some of {', '.join(choices)}: {text!r}")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", choices=("frontier", "counter", "keys"), required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for <part>.json/.md")
    ap.add_argument("--data", type=Path, default=DATA, help="the figshare-btd folder")
    ap.add_argument("--size", type=int, default=48, help="image side (area-averaged from 256)")
    ap.add_argument("--limit", type=int, help="images per class and split (tiny runs)")
    ap.add_argument("--modes", type=_names(tuple(MODES)), default=list(MODES))
    ap.add_argument("--psnr", type=_floats, default=[45.0, 40.0, 35.0, 30.0],
                    help="target foreground PSNRs (dB) of the frontier")  # fmt: skip
    ap.add_argument("--counter-psnr", type=float, default=35.0, help="budget of counter / keys")
    ap.add_argument("--counters", type=_names(tuple(c.name for c in DEFAULT_COUNTER_ATTACKS)),
                    default=[c.name for c in DEFAULT_COUNTER_ATTACKS])  # fmt: skip
    ap.add_argument("--key-modes", type=_names(tuple(MODES)), default=["paper"])
    ap.add_argument("--attacker-n", type=int, default=64, help="attacker images per class")
    ap.add_argument("--iters", type=int, default=40, help="PGD iterations of paper modes")
    ap.add_argument("--poison-iters", type=int, default=50, help="per restart")
    ap.add_argument("--restarts", type=int, default=2, help="poison crafting restarts")
    ap.add_argument("--poison-norm", choices=("l2", "linf"), default="linf")
    ap.add_argument("--archs", type=_names(("resnet18", "vgg11", "preact_resnet18")),
                    default=["resnet18", "vgg11"])  # fmt: skip
    ap.add_argument("--width", type=int, default=8, help="victim width")
    ap.add_argument("--epochs", type=int, default=8, help="victim epochs")
    ap.add_argument("--shift", type=int, default=3, help="victims' shift augmentation (px)")
    ap.add_argument("--base-arch", choices=("resnet18", "vgg11", "preact_resnet18"),
                    default="resnet18", help="the data owner's crafting model")  # fmt: skip
    ap.add_argument("--combiner", choices=("none", "concat"),
                    help="override every mode's combiner (none: basic key)")  # fmt: skip
    ap.add_argument("--base-width", type=int, default=16)
    ap.add_argument("--base-epochs", type=int, default=15)
    ap.add_argument("--deadline", type=float, default=math.inf, help="minutes; stops between rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows of an earlier <out>/<part>.json made with the same "
                    "settings and run only the missing ones")  # fmt: skip
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args)
    {"frontier": part_frontier, "counter": part_counter, "keys": part_keys}[args.part](
        run, args.out
    )
    print(f"done in {time.monotonic() - run.t0:.0f} s; wrote {args.out}/{args.part}.*", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
