"""``medcrypt craft``: the surrogate of a mode ``unlearnable`` key (the min-min loop).

An unlearnable key needs one crafting run before the archive job: the min-min loop of
:func:`medcrypt.processing.craft_surrogate` on a labelled sample of slices. It writes the
surrogate checkpoint (owner-only, like every checkpoint) and records the surrogate's content
hash in the key, so the job refuses any other model with this key. The job then crafts each
case on its own against that surrogate.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from medcrypt.cli._options import device_option, seed_option, width_option
from medcrypt.cli._progress import progress_bar
from medcrypt.errors import ConfigError

__all__ = ["register"]


@click.command("craft")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A mode unlearnable key from `medcrypt keygen` (rewritten to name the surrogate).",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labelled slices DIR/<class>/<name>.png|.npy (the key's classes), e.g. `medcrypt "
    "slice` output of a share of the archive.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Surrogate checkpoint to write (owner-only); pass it to the job as --model.",
)
@click.option(
    "--sample",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Share of --data the loop runs on (at least 4 slices per class are kept); measured: "
    "a surrogate from 25% protects as well as one from all (README, protection results).",
)
@click.option(
    "--arch",
    default="cnn",
    show_default=True,
    help="Surrogate architecture (the measured default: the plain five-layer BN CNN).",
)
@width_option(16)
@click.option(
    "--rounds",
    default=15,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many min-min rounds (it stops once the surrogate fits 99% of the "
    "perturbed sample).",
)
@click.option(
    "--loop-step",
    type=click.FloatRange(min=0, min_open=True),
    help="Step of the loop's noise updates (default 2.5 * eps / 20, whatever the key's "
    "per-case --iters and --step).",
)
@click.option(
    "--robust",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Robust min-min (SEM-style, issue 23): the surrogate trains, and the noise "
    "minimises, at a random L2 point of this share of eps around the release; 0 = off. "
    "Not the default: against a standard ResNet-18 it measured worse (README, issue 23).",
)
@seed_option
@device_option
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
def craft_command(
    key_path: Path,
    data_dir: Path,
    out_path: Path,
    sample: float,
    arch: str,
    width: int,
    rounds: int,
    loop_step: float | None,
    robust: float,
    seed: int,
    device: str,
    force: bool,
) -> None:
    """Craft the surrogate of an unlearnable key (min-min on labelled slices); name it in the key.

    Error-minimizing noise (Huang et al., ICLR 2021): the surrogate is trained side by side
    with noise that makes every slice easy for its own label. The job then perturbs every
    case toward its own label against this surrogate.
    """
    from medcrypt.cli._slices import read_slice_folder
    from medcrypt.processing import (
        EncryptionKey,
        MinMinSettings,
        craft_surrogate,
        crafting_sample,
        foreground_masks,
        save_checkpoint,
    )

    key = EncryptionKey.load(key_path)
    if key.pgd.mode != "unlearnable":
        raise ConfigError(
            f"key {key.fingerprint} is mode {key.pgd.mode!r}; craft serves mode unlearnable "
            f"keys (medcrypt keygen --mode unlearnable)",
            uri=str(key_path),
        )
    if out_path.exists() and not force:
        raise ConfigError("surrogate file exists already; use --force", uri=str(out_path))
    with progress_bar("reading slices") as progress:
        data = read_slice_folder(data_dir, classes=key.class_names, progress=progress)
    idx = crafting_sample(data.labels, key.num_classes, sample, seed)
    images, labels = data.images[idx], data.labels[idx]
    t0 = time.monotonic()
    with progress_bar("min-min rounds") as progress:
        result = craft_surrogate(
            images,
            labels,
            n_classes=key.num_classes,
            settings=key.pgd,
            minmin=MinMinSettings(
                archs=(arch,),
                width=width,
                max_rounds=rounds,
                noise_step=loop_step,
                robust=robust,
            ),
            masks=foreground_masks(images) if key.pgd.foreground else None,
            seed=seed,
            device=device,
            progress=progress,
        )
    digest = save_checkpoint(
        out_path, result.models[0], arch=arch, class_names=key.class_names, width=width
    )
    named = key.with_surrogate([digest])
    named.save(key_path, overwrite=True)
    click.echo(
        f"wrote surrogate {digest[:19]}... to {out_path} (owner-only; {arch} width {width}, "
        + (f"robust {robust:g}, " if robust > 0 else "")
        + f"{len(idx)} slices, {result.rounds} rounds, accuracy {result.accuracy[-1]:.3f} on the "
        f"perturbed sample, {time.monotonic() - t0:.0f} s)"
    )
    click.echo(
        f"key {key_path} now names it: fingerprint {named.fingerprint} (was {key.fingerprint}); "
        f"run the job with --model {out_path}"
    )


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(craft_command)
