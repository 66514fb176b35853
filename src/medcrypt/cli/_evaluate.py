"""CLI commands of medcrypt.processing (evaluate, phantoms).

Slice folders use one layout everywhere (``medcrypt phantoms`` writes it, ``medcrypt train``
and ``medcrypt evaluate --data`` read it)::

    DIR/<class_name>/<index>.png     16-bit greyscale PNG, value / 65535 in [0, 1]
    DIR/<class_name>/<index>.npy     or float32 (H, W) arrays in [0, 1]

Classes are the sub-folder names in :data:`medcrypt.medical.CLASS_NAMES` order when they are
those names, else sorted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
from pydantic import ValidationError

from medcrypt.cli._evaluate_unlearnable import unlearnable_options
from medcrypt.cli._keygen import _parse_cap
from medcrypt.cli._options import (
    archs_option,
    device_option,
    epochs_option,
    foreground_option,
    mode_option,
    norm_option,
    seed_option,
    width_option,
)
from medcrypt.cli._progress import progress_bar
from medcrypt.config import format_validation_error
from medcrypt.errors import ConfigError

if TYPE_CHECKING:
    from medcrypt.processing.assessment import ProtectionReport

__all__ = ["register"]

logger = logging.getLogger(__name__)


@click.command("phantoms")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write DIR/<class_name>/<index>.(png|npy) into (created if absent).",
)
@click.option(
    "--n-per-class",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Phantom slices written per class.",
)
@click.option(
    "--size",
    default=64,
    show_default=True,
    type=click.IntRange(min=8),
    help="Slice side in pixels.",
)
@seed_option
@click.option(
    "--format",
    "fmt",
    default="png",
    show_default=True,
    type=click.Choice(["png", "npy"]),
    help="16-bit greyscale PNG or float32 .npy.",
)
def phantoms_command(out_dir: Path, n_per_class: int, size: int, seed: int, fmt: str) -> None:
    """Write labelled synthetic tumour slices (5 classes) for `medcrypt train` / `evaluate`."""
    from medcrypt.medical import CLASS_NAMES, make_phantom_slices

    images, labels = make_phantom_slices(n_per_class, size=size, seed=seed)
    counts = dict.fromkeys(CLASS_NAMES, 0)
    with progress_bar("writing phantoms") as progress:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            name = CLASS_NAMES[int(label)]
            folder = out_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{counts[name]:05d}"
            counts[name] += 1
            if fmt == "png":
                from medcrypt.medical import encode_png16

                (folder / f"{stem}.png").write_bytes(encode_png16(image))
            else:
                np.save(folder / f"{stem}.npy", image.astype(np.float32))
            progress(i + 1, len(images), name)
    click.echo(f"wrote {len(images)} slices ({n_per_class} per class, {size}x{size}) to {out_dir}")


def _split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices (every class keeps at least one slice on each side)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 2:
            raise ConfigError(
                f"class {int(c)} has {len(idx)} slice(s); a train/test split needs at least 2",
                field="data",
            )
        k = min(len(idx) - 1, max(1, round(test_fraction * len(idx))))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@click.command("evaluate")
@click.option(
    "--phantom/--no-phantom",
    default=True,
    show_default=True,
    help="Evaluate on synthetic phantoms (ignored when --data is given).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Labelled slice folder DIR/<class_name>/<name>.(png|npy) instead of phantoms.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Base model checkpoint (default: train one, the first --archs, on the train split).",
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Encryption key (default: the paper's 5-class concat correspondence, else a fresh "
    "concat key drawn from --seed).",
)
@click.option(
    "--n-per-class",
    default=120,
    show_default=True,
    type=click.IntRange(min=2),
    help="Phantom training slices per class.",
)
@click.option(
    "--n-test-per-class",
    default=40,
    show_default=True,
    type=click.IntRange(min=1),
    help="Phantom test slices per class (drawn with seed + 1).",
)
@click.option(
    "--size",
    default=64,
    show_default=True,
    type=click.IntRange(min=16),
    help="Phantom side in pixels (PSNR at a given --eps rises with the size).",
)
@click.option(
    "--test-fraction",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="With --data: share of each class held out as the test split.",
)
@archs_option
@width_option(8)
@epochs_option(15)
@click.option(
    "--base-width",
    type=click.IntRange(min=1),
    help="Width of the base model trained here (default: --width). The base model is the "
    "data owner's; a stronger one plants stronger features.",
)
@click.option(
    "--base-epochs",
    type=click.IntRange(min=1),
    help="Training epochs of the base model trained here (default: --epochs).",
)
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(min=2),
    help="Training batch size.",
)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate.")
@click.option(
    "--eps",
    default=1.0,
    show_default=True,
    type=float,
    help="Budget: L2 norm over the slice, or the largest pixel change with --norm linf.",
)
@mode_option("paper")
@norm_option
@foreground_option
@click.option(
    "--step",
    type=float,
    help="PGD step (L2 length of each normalised step); default 0.1, and 2.5 * eps / iters "
    "for mode unlearnable.",
)
@click.option(
    "--iters", default=20, show_default=True, type=click.IntRange(min=1), help="PGD iterations."
)
@unlearnable_options
@seed_option
@device_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Writes OUT/protection_report.json, .md and .html (the page with the figures).",
)
def evaluate_command(
    phantom: bool,
    data_dir: Path | None,
    model_path: Path | None,
    key_path: Path | None,
    n_per_class: int,
    n_test_per_class: int,
    size: int,
    test_fraction: float,
    archs: str,
    width: int,
    epochs: int,
    base_width: int | None,
    base_epochs: int | None,
    batch_size: int,
    lr: float,
    eps: float,
    mode: str,
    norm: str,
    foreground: bool,
    step: float | None,
    iters: int,
    sample: float,
    craft_arch: str,
    craft_width: int,
    rounds: int,
    linf_cap: str | None,
    victims: str,
    seed: int,
    device: str,
    out_dir: Path,
) -> None:
    """Protection report (paper Table 12): train models on encrypted data, test on real data.

    The training split is encrypted with its true labels, the test split with the base
    model's predicted labels. Each architecture is trained on the encrypted training set and
    scored per epoch on the encrypted and the original test set, next to a clean baseline.
    A drawn key in a poison mode crafts with 4 restarts and full-strength augmentation.
    """
    from medcrypt.processing import (
        EncryptionKey,
        PGDSettings,
        TrainSettings,
        build_model,
        evaluate_accuracy,
        load_checkpoint,
        train_model,
    )
    from medcrypt.processing.assessment import (
        ProtectionSettings,
        evaluate_protection,
        paper_key,
        phantom_protection_report,
    )

    arch_list = tuple(a.strip() for a in archs.split(",") if a.strip())
    if not arch_list:
        raise ConfigError("--archs names no architecture", field="archs")
    settings = ProtectionSettings(
        archs=arch_list,
        width=width,
        train=TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr),
        seed=seed,
        base_width=base_width,
        base_epochs=base_epochs,
    )
    if model_path is not None and (base_width is not None or base_epochs is not None):
        raise ConfigError(
            "--base-width and --base-epochs shape a base model trained here; "
            "they cannot apply to the one given with --model",
            field="base_width",
        )
    fields = {"eps": eps, "iters": iters, "mode": mode, "norm": norm, "foreground": foreground}
    if mode == "unlearnable":
        from medcrypt.cli._evaluate_unlearnable import (
            UnlearnableOptions,
            evaluate_unlearnable_command,
        )

        with progress_bar("protection report (mode unlearnable)") as progress:
            report = evaluate_unlearnable_command(
                data_dir=data_dir,
                phantom=phantom,
                key_path=key_path,
                model_path=model_path,
                n_per_class=n_per_class,
                n_test_per_class=n_test_per_class,
                size=size,
                test_fraction=test_fraction,
                pgd_fields=fields if step is None else {**fields, "step": step},
                options=UnlearnableOptions(
                    sample, craft_arch, craft_width, rounds, linf_cap, victims
                ),
                settings=settings,
                device=device,
                progress=progress,
            )
        _write(report, out_dir)
        return
    try:
        cap = None if linf_cap is None else _parse_cap(linf_cap)
        pgd = PGDSettings.model_validate(
            fields
            | {"step": 0.1 if step is None else step}
            | ({} if cap is None else {"linf_cap": cap})
        )
    except ValidationError as exc:
        raise click.UsageError(format_validation_error(exc, source="evaluate options")) from None
    key = EncryptionKey.load(key_path) if key_path is not None else None
    with progress_bar("protection report") as progress:
        if data_dir is None:
            if not phantom:
                raise ConfigError("give --data DIR or keep --phantom", field="data")
            if model_path is not None:
                raise ConfigError("--model needs --data (phantom mode trains its own base model)")
            report = phantom_protection_report(
                n_per_class=n_per_class,
                n_test_per_class=n_test_per_class,
                size=size,
                seed=seed,
                settings=settings,
                pgd=pgd if key is None else None,
                key=key,
                device=device,
                progress=progress,
            )
        else:
            from medcrypt.cli._slices import read_slice_folder

            folder = read_slice_folder(data_dir)
            tr, te = _split(folder.labels, test_fraction, seed)
            x_train, y_train = folder.images[tr], folder.labels[tr]
            x_test, y_test = folder.images[te], folder.labels[te]
            clean_history = None
            if model_path is not None:
                loaded = load_checkpoint(model_path)
                if tuple(loaded.class_names) != folder.class_names:
                    raise ConfigError(
                        f"model classes {list(loaded.class_names)} differ from the folder's "
                        f"{list(folder.class_names)}",
                        uri=str(model_path),
                    )
                base = loaded.model
            else:
                base = build_model(
                    arch_list[0],
                    len(folder.class_names),
                    width=settings.base_model_width,
                    seed=seed,
                )
                hist = train_model(
                    base,
                    x_train,
                    y_train,
                    seed=seed,
                    settings=settings.base_train,
                    device=device,
                    on_epoch=lambda _e, m: {
                        "original_test": evaluate_accuracy(m, x_test, y_test, device=device)
                    },
                )
                clean_history = [r.metrics["original_test"] for r in hist]
            if key is None:
                if len(folder.class_names) == 5:
                    key = paper_key(folder.class_names, seed=seed, pgd=pgd)
                else:
                    key = EncryptionKey.generate(
                        folder.class_names, combiner="concat", seed=seed, pgd=pgd
                    )
            report = evaluate_protection(
                base,
                key,
                x_train,
                y_train,
                x_test,
                y_test,
                settings=settings,
                pgd=pgd if key_path is None else None,
                device=device,
                dataset=str(data_dir),
                base_clean_history=clean_history,
                progress=progress,
            )
    _write(report, out_dir)


def _write(report: ProtectionReport, out_dir: Path) -> None:
    """OUT/protection_report.json, .md and .html, judged by the report's own mode's bar."""
    from medcrypt.processing import release_json
    from medcrypt.report import write_protection_page

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "protection_report.json").write_bytes(
        release_json(report, where="protection_report.json")
    )
    markdown = report.to_markdown()
    (out_dir / "protection_report.md").write_text(markdown)
    click.echo(markdown)
    _, bar = report.verdict()
    write_protection_page(
        [report.model_dump(mode="json")], out_dir / "protection_report.html", notes=[bar]
    )
    click.echo(f"{bar}; wrote {out_dir}/protection_report.(json|md|html)")


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(phantoms_command)
    group.add_command(evaluate_command)
