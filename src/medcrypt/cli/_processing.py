"""CLI commands of medcrypt.processing: ``train`` and ``encrypt-slices`` (``keygen``: ``_keygen``).

Both read slice folders (``_slices``: layout, reading, writing, the per-slice record).
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import numpy as np

from medcrypt.cli._options import device_option, epochs_option, seed_option, width_option
from medcrypt.cli._progress import progress_bar
from medcrypt.cli._slices import LAYOUT_HELP, SliceRecord, _finite, read_slice_folder, write_slice
from medcrypt.errors import ConfigError

__all__ = ["register"]

logger = logging.getLogger(__name__)


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
@width_option(64)
@epochs_option(10)
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
@seed_option
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
    ensemble, hashes = [], []
    for path in ensemble_paths:
        extra = load_checkpoint(path)
        key.check_model(extra.num_classes, extra.class_names)
        ensemble.append(extra.model)
        hashes.append(extra.content_hash)
    key.check_surrogate([loaded.content_hash, *hashes])
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
                    linf_cap=cfg.linf_cap,
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
                    linf_cap=cfg.linf_cap,
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
    group.add_command(train_command)
    group.add_command(encrypt_slices_command)
