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

import click
import numpy as np

from medcrypt.cli._progress import progress_bar

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
@click.option("--n-per-class", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default=64, show_default=True, type=click.IntRange(min=8))
@click.option("--seed", default=0, show_default=True, type=int)
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


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(phantoms_command)
