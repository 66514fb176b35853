"""CLI commands of medcrypt.processing: ``keygen``, ``train``, ``encrypt-slices``.

Slice folders (read by ``train`` and ``encrypt-slices``, written by ``encrypt-slices`` and
``medcrypt phantoms``) hold one sub-folder per class::

    DIR/<class_name>/<name>.png     greyscale PNG (16-bit: value / 65535; 8-bit: / 255)
    DIR/<class_name>/<name>.npy     or a float (H, W) array in [0, 1]

Classes are ordered as :data:`medcrypt.medical.CLASS_NAMES` when the folders are exactly those
names, else sorted by name (``--classes`` fixes another order). Other files are ignored.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from pydantic import ValidationError

from medcrypt._types import ProgressCallback
from medcrypt.cli._options import device_option
from medcrypt.cli._progress import progress_bar
from medcrypt.config import StrictModel, format_validation_error
from medcrypt.errors import ConfigError, ImageFormatError

__all__ = ["SliceFolder", "SliceRecord", "read_slice_folder", "register", "write_slice"]

logger = logging.getLogger(__name__)

_EXTS = (".png", ".npy")

LAYOUT_HELP = (
    "DIR holds one sub-folder per class, each with 2D slices as 16-bit greyscale .png "
    "(value/65535) or float .npy arrays in [0, 1]: DIR/<class_name>/<name>.png|.npy."
)


# -- slice folders -------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceFolder:
    """A labelled slice folder read into memory."""

    images: np.ndarray  # (N, H, W) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64 index into class_names
    class_names: tuple[str, ...]
    paths: tuple[Path, ...]  # relative to the folder root, e.g. meningioma/00003.png


def _read_one(path: Path) -> np.ndarray:
    from medcrypt.medical import decode_png16

    if path.suffix == ".png":
        try:
            arr = decode_png16(path.read_bytes())
        except ImageFormatError as exc:
            raise ImageFormatError(exc.message, uri=str(path)) from exc
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImageFormatError(f"not a readable .npy array: {exc}", uri=str(path)) from exc
        if not np.issubdtype(arr.dtype, np.floating):
            raise ImageFormatError(
                f"expected a float array in [0, 1], got {arr.dtype}", uri=str(path)
            )
    if arr.ndim != 2:
        raise ImageFormatError(f"expected a 2D slice, got shape {arr.shape}", uri=str(path))
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ImageFormatError(
            f"expected values in [0, 1], got [{np.nanmin(arr)}, {np.nanmax(arr)}]", uri=str(path)
        )
    return arr.astype(np.float32)


def class_order(folders: Sequence[str], classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class order for a set of folder names (see the module docstring)."""
    from medcrypt.medical import CLASS_NAMES

    if classes:
        return tuple(classes)
    if set(folders) == set(CLASS_NAMES):
        return tuple(CLASS_NAMES)
    return tuple(sorted(folders))


def read_slice_folder(
    root: Path, *, classes: Sequence[str] | None = None, progress: ProgressCallback | None = None
) -> SliceFolder:
    """Read ``root/<class>/<name>.(png|npy)``; all slices must share one shape.

    Args:
        root: the folder.
        classes: class order to use; folders must be a subset of it. Default: see module doc.

    Raises:
        ConfigError: missing folder, no classes/slices, unknown class folder, mixed shapes.
        ImageFormatError: an unreadable slice (naming the file).
    """
    if not root.is_dir():
        raise ConfigError("slice folder does not exist", uri=str(root))
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ConfigError(f"expected class sub-folders. {LAYOUT_HELP}", uri=str(root))
    names = class_order(folders, classes)
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise ConfigError(
            f"class folders {unknown} are not among the classes {list(names)}", uri=str(root)
        )
    files: list[tuple[Path, int]] = []
    for c, name in enumerate(names):
        folder = root / name
        if folder.is_dir():
            files += [(p, c) for p in sorted(folder.iterdir()) if p.suffix in _EXTS]
    if not files:
        raise ConfigError(f"no .png or .npy slices found. {LAYOUT_HELP}", uri=str(root))
    images = []
    for i, (path, _) in enumerate(files):
        images.append(_read_one(path))
        if progress is not None:
            progress(i + 1, len(files), path.parent.name)
    shapes = sorted({a.shape for a in images})
    if len(shapes) != 1:
        raise ConfigError(
            f"all slices must share one shape, found {shapes[:4]}"
            f"{' ...' if len(shapes) > 4 else ''}",
            uri=str(root),
        )
    return SliceFolder(
        images=np.stack(images),
        labels=np.asarray([c for _, c in files], dtype=np.int64),
        class_names=names,
        paths=tuple(p.relative_to(root) for p, _ in files),
    )


def write_slice(
    path: Path, image01: np.ndarray, *, original01: np.ndarray, eps: float, norm: str = "l2"
) -> np.ndarray:
    """Write one released slice as 16-bit PNG (quantised within eps in ``norm``) or float32
    .npy. Pixels the protection left unchanged are stored exactly as the original's.

    Returns the image exactly as stored, as float64 in [0, 1] (for metrics).
    """
    from medcrypt.medical import encode_png16
    from medcrypt.processing import quantise

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        codes = quantise(image01, original01, eps=eps, levels=65535, norm=norm)
        stored = codes.astype(np.float64) / 65535
        path.write_bytes(encode_png16(stored))
        return stored
    arr = image01.astype(np.float32)
    np.save(path, arr)
    return arr.astype(np.float64)


class SliceRecord(StrictModel):
    """What ``encrypt-slices`` did to one slice. Of the key, only what
    :mod:`medcrypt.processing.protection._release` allows: fingerprint, PGD settings, number
    of targets."""

    source: str
    output: str
    label: int
    label_name: str
    label_source: str  # "folder" or "predicted"
    key_fingerprint: str
    model_hash: str
    pgd: dict[str, Any]
    eps: float
    n_targets: int
    target_success: float | None  # None in shortcut mode (no model asked)
    l2: float
    linf: float
    psnr: float | None  # None when identical (infinite PSNR)
    ssim: float
    #: protection mode, budget norm and whether the budget was confined to the foreground
    #: (recorded; none of them is secret). Defaults: records from before these fields.
    mode: str = "paper"
    norm: str = "l2"
    foreground: bool = False
    #: the anatomy mask's share of the slice, and PSNR / SSIM over it only
    foreground_fraction: float | None = None
    psnr_foreground: float | None = None
    ssim_foreground: float | None = None


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# -- commands ------------------------------------------------------------------------------


@click.command("keygen")
@click.option("--classes", help="Comma-separated class names, in model output order.")
@click.option(
    "--phantom-classes",
    is_flag=True,
    help="Use the 5 phantom tumour classes (medcrypt.medical.CLASS_NAMES).",
)
@click.option(
    "--combiner",
    default="concat",
    show_default=True,
    type=click.Choice(["none", "concat", "mixup", "mixup_concat", "cutmix"]),
    help="How the per-target PGD outputs are merged (none = basic single-target method).",
)
@click.option(
    "--targets-per-class",
    type=click.IntRange(min=1),
    help="N(y): targets per class (default 1 for none, 4 for mixup_concat, else 2).",
)
@click.option("--allow-fixed-points", is_flag=True, help="Allow a class to target itself.")
@click.option(
    "--seed",
    type=int,
    help="Seed of targets and parameters (default: random). The seed is as secret as the key.",
)
@click.option(
    "--eps",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Budget of every released image (pixels in [0, 1]): the L2 norm over the slice, or the "
    "largest pixel change with --norm linf; the paper's MRI run: L2 2 at 320x320.",
)
@click.option(
    "--step",
    default=0.1,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="PGD step (L2 length of each normalised step; with --norm linf the per-pixel sign step).",
)
@click.option(
    "--iters",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="PGD iterations (the paper: 100).",
)
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fp32", "bf16"]),
    help="auto = bf16 autocast on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16), "
    "fp32 elsewhere.",
)
@click.option(
    "--mode",
    default="paper",
    show_default=True,
    type=click.Choice(["paper", "poison", "shortcut", "shortcut+poison"]),
    help="paper: the paper's plain targeted L2 PGD (reproduction); poison: TAP-style crafting "
    "(differentiable augmentation, restarts, Linf option); shortcut: keyed class-wise noise "
    "patterns, no model needed, IO speed; shortcut+poison: both inside one budget.",
)
@click.option(
    "--norm",
    default="l2",
    show_default=True,
    type=click.Choice(["l2", "linf"]),
    help="Budget norm (linf needs a poison or shortcut mode).",
)
@click.option(
    "--foreground/--no-foreground",
    default=True,
    show_default=True,
    help="Spend the budget on the anatomy only: background pixels are released unchanged.",
)
@click.option(
    "--restarts",
    type=click.IntRange(min=1),
    help="Poison crafting restarts, the lowest loss kept (default 4 for poison modes, else 1).",
)
@click.option(
    "--augment",
    type=click.FloatRange(0.0, 1.0),
    help="Strength of the differentiable augmentation while crafting, 0-1 (default 1 for "
    "poison modes, else 0).",
)
@click.option(
    "--shortcut-patch",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Side in pixels of the shortcut pattern's constant patches.",
)
@click.option(
    "--shortcut-share",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="The shortcut's share of the budget in shortcut+poison (of eps^2 for l2, of eps for "
    "linf); the rest is crafted.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key file to write (JSON, owner-only permissions).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def keygen_command(
    classes: str | None,
    phantom_classes: bool,
    combiner: str,
    targets_per_class: int | None,
    allow_fixed_points: bool,
    seed: int | None,
    eps: float,
    step: float,
    iters: int,
    precision: str,
    mode: str,
    norm: str,
    foreground: bool,
    restarts: int | None,
    augment: float | None,
    shortcut_patch: int,
    shortcut_share: float,
    out_path: Path,
    force: bool,
) -> None:
    """Generate a secret encryption key and print its fingerprint (never the secret).

    Keep the key file private: it holds the target classes, combiner parameters and the
    secret behind the fingerprint. Outputs name the key only by fingerprint.
    """
    from medcrypt.processing import EncryptionKey, PGDSettings

    if bool(classes) == phantom_classes:
        raise click.UsageError("give exactly one of --classes a,b,c or --phantom-classes")
    if phantom_classes:
        from medcrypt.medical import CLASS_NAMES

        names: tuple[str, ...] = tuple(CLASS_NAMES)
    else:
        assert classes is not None
        names = tuple(c.strip() for c in classes.split(",") if c.strip())
    chosen = {
        "eps": eps,
        "step": step,
        "iters": iters,
        "precision": precision,
        "mode": mode,
        "norm": norm,
        "foreground": foreground,
        "shortcut_patch": shortcut_patch,
        "shortcut_share": shortcut_share,
    }
    if restarts is not None:
        chosen["restarts"] = restarts
    if augment is not None:
        chosen["augment"] = augment
    try:
        pgd = PGDSettings.model_validate(chosen)
    except ValidationError as exc:
        raise click.UsageError(format_validation_error(exc, source="keygen options")) from None
    key = EncryptionKey.generate(
        names,
        combiner=combiner,
        seed=seed if seed is not None else secrets.randbits(63),
        targets_per_class=targets_per_class,
        allow_fixed_points=allow_fixed_points,
        pgd=pgd,
    )
    key.save(out_path, overwrite=force)
    click.echo(
        f"wrote key {key.fingerprint} to {out_path} (owner-only; {len(names)} classes, "
        f"combiner {combiner}, mode {mode}, {norm} eps {eps}, "
        f"foreground {'on' if foreground else 'off'})"
    )


@click.command("train")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help=LAYOUT_HELP,
)
@click.option(
    "--arch",
    default="resnet18",
    show_default=True,
    type=click.Choice(["resnet18", "preact_resnet18", "vgg11"]),
    help="Architecture (the paper's base model is resnet18).",
)
@click.option(
    "--width",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Channel width of the first stage (64 = the standard network).",
)
@click.option(
    "--epochs", default=10, show_default=True, type=click.IntRange(min=1), help="Training epochs."
)
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training batch size.",
)
@click.option(
    "--lr",
    default=1e-3,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Adam learning rate.",
)
@click.option(
    "--shift", default=0, show_default=True, type=click.IntRange(min=0), help="Random shift (px)."
)
@click.option(
    "--val-fraction",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 0.9),
    help="Hold out this fraction (seeded) to report validation accuracy per epoch.",
)
@click.option("--classes", help="Comma-separated class order (default: see --data layout).")
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of initialisation, shuffling and the validation split.",
)
@device_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint to write (.pt).",
)
def train_command(
    data_dir: Path,
    arch: str,
    width: int,
    epochs: int,
    batch_size: int,
    lr: float,
    shift: int,
    val_fraction: float,
    classes: str | None,
    seed: int,
    device: str,
    out_path: Path,
) -> None:
    """Train a classifier on a folder of labelled 2D slices and save a checkpoint.

    The data folder holds one sub-folder per class with 16-bit .png or .npy slices in [0, 1]
    (DIR/<class_name>/<name>.png). The checkpoint records architecture, class names, input
    normalisation, per-epoch history and a content hash.
    """
    from medcrypt.processing import TrainSettings, build_model, save_checkpoint, train_model

    order = [c.strip() for c in classes.split(",")] if classes else None
    with progress_bar("reading slices") as progress:
        data = read_slice_folder(data_dir, classes=order, progress=progress)
    n = data.labels.shape[0]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = round(n * val_fraction)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    model = build_model(arch, len(data.class_names), width=width, seed=seed)
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, shift=shift)
    with progress_bar(f"training {arch}") as progress:
        history = train_model(
            model,
            data.images[train_idx],
            data.labels[train_idx],
            seed=seed,
            settings=settings,
            val_images=data.images[val_idx] if n_val else None,
            val_labels=data.labels[val_idx] if n_val else None,
            device=device,
            progress=progress,
        )
    digest = save_checkpoint(
        out_path,
        model,
        arch=arch,
        class_names=data.class_names,
        width=width,
        history=history,
    )
    last = history[-1]
    val = "" if last.val_accuracy is None else f", val acc {last.val_accuracy:.3f}"
    click.echo(
        f"trained {arch} (width {width}) on {len(train_idx)} slices, {len(data.class_names)} "
        f"classes: train acc {last.train_accuracy:.3f}{val}"
    )
    click.echo(f"wrote {out_path} ({digest})")


@click.command("encrypt-slices")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help=LAYOUT_HELP,
)
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Key file from `medcrypt keygen`.",
)
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Base-model checkpoint from `medcrypt train` (same classes as the key).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: same layout as --data, plus one <name>.json record per slice.",
)
@click.option(
    "--labels",
    "label_source",
    default="folder",
    show_default=True,
    type=click.Choice(["folder", "predicted"]),
    help="Encrypt toward the folder's class, or the base model's prediction (as the paper "
    "does for the test split). Outputs keep the input's folder either way.",
)
@click.option(
    "--format",
    "fmt",
    default="same",
    show_default=True,
    type=click.Choice(["same", "png", "npy"]),
    help="Output format: as the input slice, 16-bit PNG (quantised within eps) or float32 .npy.",
)
@click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Slices per batched PGD call (memory bound, not a result parameter).",
)
@click.option(
    "--ensemble",
    "ensemble_paths",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A further crafting model (checkpoint, same classes) for the key's poison mode; "
    "repeat for several. The crafting loss is averaged over --model and these.",
)
@device_option
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def encrypt_slices_command(
    data_dir: Path,
    key_path: Path,
    model_path: Path,
    out_dir: Path,
    label_source: str,
    fmt: str,
    batch_size: int,
    ensemble_paths: tuple[Path, ...],
    device: str,
    overwrite: bool,
) -> None:
    """Encrypt a folder of labelled 2D slices with a key and its base model.

    The key's mode (paper, poison, shortcut, shortcut+poison), norm and foreground setting
    decide the perturbation. Writes each slice to OUT/<class>/<name>.(png|npy) with a record
    <name>.json (L2, Linf, PSNR and SSIM over the slice and over the foreground, target
    success, mode, key fingerprint; never the key), and OUT/summary.json.
    """
    from medcrypt.processing import (
        EncryptionKey,
        Encryptor,
        image_metrics,
        key_release,
        load_checkpoint,
        release_json,
    )

    if out_dir.resolve() == data_dir.resolve():
        raise ConfigError("--out must differ from --data (originals would be overwritten)")
    key = EncryptionKey.load(key_path)
    loaded = load_checkpoint(model_path)
    key.check_model(loaded.num_classes, loaded.class_names)
    with progress_bar("reading slices") as progress:
        data = read_slice_folder(data_dir, classes=key.class_names, progress=progress)
    outputs = []
    for rel in data.paths:
        ext = rel.suffix if fmt == "same" else f".{fmt}"
        outputs.append(rel.with_suffix(ext))
    if not overwrite:
        clash = [str(o) for o in outputs if (out_dir / o).exists()]
        if clash:
            raise ConfigError(
                f"{len(clash)} output file(s) exist already (e.g. {clash[0]}); use --overwrite",
                uri=str(out_dir),
            )
    ensemble = []
    for path in ensemble_paths:
        extra = load_checkpoint(path)
        key.check_model(extra.num_classes, extra.class_names)
        ensemble.append(extra.model)
    encryptor = Encryptor(loaded.model, key, device=device, ensemble=ensemble)
    cfg = encryptor.settings
    eps = cfg.eps
    released = key_release(key.fingerprint, cfg)
    secret = [key.secret.get_secret_value()]
    n = data.labels.shape[0]
    records: list[SliceRecord] = []
    with progress_bar("encrypting") as progress:
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            originals = data.images[sl]
            if label_source == "predicted":
                labels = encryptor.predict(originals)
            else:
                labels = data.labels[sl]
            result = encryptor.encrypt(originals, labels)
            for j in range(originals.shape[0]):
                i = start + j
                stored = write_slice(
                    out_dir / outputs[i],
                    result.images[j],
                    original01=originals[j],
                    eps=eps,
                    norm=cfg.norm,
                )
                assert result.foreground is not None
                m = image_metrics(originals[j], stored, result.foreground[j])
                record = SliceRecord(
                    source=data.paths[i].as_posix(),
                    output=outputs[i].as_posix(),
                    label=int(labels[j]),
                    label_name=key.class_names[int(labels[j])],
                    label_source=label_source,
                    key_fingerprint=released["key_fingerprint"],
                    model_hash=loaded.content_hash,
                    pgd=released["pgd"],
                    eps=eps,
                    n_targets=len(result.targets[j]),
                    target_success=_finite(float(result.target_success[j])),
                    l2=float(m["l2"][0]),
                    linf=float(m["linf"][0]),
                    psnr=_finite(float(m["psnr"][0])),
                    ssim=float(m["ssim"][0]),
                    mode=cfg.mode,
                    norm=cfg.norm,
                    foreground=cfg.foreground,
                    foreground_fraction=float(m["foreground_fraction"][0]),
                    psnr_foreground=_finite(float(m["psnr_foreground"][0])),
                    ssim_foreground=_finite(float(m["ssim_foreground"][0])),
                )
                (out_dir / outputs[i]).with_suffix(".json").write_bytes(
                    release_json(record, where=f"record of {record.source}", forbidden_text=secret)
                )
                records.append(record)
            progress(sl.stop, n, "slices")
    psnrs = [r.psnr for r in records if r.psnr is not None]
    fg_psnrs = [r.psnr_foreground for r in records if r.psnr_foreground is not None]
    fg_ssims = [r.ssim_foreground for r in records if r.ssim_foreground is not None]
    hits = [r.target_success for r in records if r.target_success is not None]
    summary = {
        "slices": len(records),
        **released,
        "model_hash": loaded.content_hash,
        "mode": cfg.mode,
        "norm": cfg.norm,
        "foreground": cfg.foreground,
        "ensemble_models": len(ensemble),
        "eps": eps,
        "label_source": label_source,
        "mean_l2": float(np.mean([r.l2 for r in records])),
        "max_l2": float(np.max([r.l2 for r in records])),
        "mean_linf": float(np.mean([r.linf for r in records])),
        "mean_psnr": float(np.mean(psnrs)) if psnrs else None,
        "mean_ssim": float(np.mean([r.ssim for r in records])),
        "mean_psnr_foreground": float(np.mean(fg_psnrs)) if fg_psnrs else None,
        "mean_ssim_foreground": float(np.mean(fg_ssims)) if fg_ssims else None,
        "mean_target_success": float(np.mean(hits)) if hits else None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_bytes(
        release_json(summary, where="summary.json", forbidden_text=secret)
    )
    psnr_text = "inf" if not psnrs else f"{np.mean(psnrs):.2f}"
    fg_text = "inf" if not fg_psnrs else f"{np.mean(fg_psnrs):.2f}"
    hit_text = "n/a" if not hits else f"{np.mean(hits):.3f}"
    click.echo(
        f"encrypted {len(records)} slices with key {key.fingerprint} (mode {cfg.mode}, "
        f"{cfg.norm}, foreground {'on' if cfg.foreground else 'off'}): mean PSNR {psnr_text}"
        f" dB (foreground {fg_text} dB), mean SSIM {summary['mean_ssim']:.4f}, max L2 "
        f"{summary['max_l2']:.4f}, max Linf {max(r.linf for r in records):.4f} (eps {eps}), "
        f"target success {hit_text}"
    )


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(keygen_command)
    group.add_command(train_command)
    group.add_command(encrypt_slices_command)
