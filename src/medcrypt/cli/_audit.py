"""CLI commands of the attacker audits: ``medcrypt audit counter-attacks``.

Slice folders use the layout of ``train`` / ``encrypt-slices`` (``DIR/<class>/<name>.png``,
16-bit PNG, or ``.npy``). The released folder is what ``encrypt-slices`` wrote; the clean
folder, when given, holds the originals under the same relative paths.
"""

from __future__ import annotations

from pathlib import Path

import click

from medcrypt.cli._options import (
    archs_option,
    device_option,
    epochs_option,
    norm_option,
    seed_option,
    width_option,
)
from medcrypt.cli._progress import progress_bar
from medcrypt.errors import ConfigError

__all__ = ["register"]


@click.group("audit")
def audit_group() -> None:
    """Attacker audits of a protected release (what an attacker can still do with it)."""


def _names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ConfigError(f"unknown {what} {bad or [text]}; expected some of {list(allowed)}")
    return names


@audit_group.command("counter-attacks")
@click.option(
    "--released",
    "released_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Released (encrypted) training slices, DIR/<class>/<name>.(png|npy).",
)
@click.option(
    "--test",
    "test_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Original labelled test slices (never transformed), same layout and classes.",
)
@click.option(
    "--clean",
    "clean_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Clean originals of the released slices under the same relative paths: needed by "
    "the mix-clean counter-attack and for the clean-trained baseline.",
)
@click.option(
    "--eps",
    required=True,
    type=click.FloatRange(min=0, min_open=True),
    help="The release's budget (adversarial training uses it).",
)
@norm_option
@click.option(
    "--attacks",
    default=None,
    help="Comma-separated counter-attacks (default: all of none, jpeg10, jpeg30, jpeg75, "
    "blur1, noise0.05, downup2, adv_train, mix_clean20).",
)
@archs_option
@width_option(8)
@epochs_option(10)
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(min=2),
    help="Victim training batch size.",
)
@click.option(
    "--shift",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Victims' random-shift augmentation in pixels (0: none).",
)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate.")
@seed_option
@device_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Writes OUT/counter_attacks.json and OUT/counter_attacks.md.",
)
def counter_attacks_command(
    released_dir: Path,
    test_dir: Path,
    clean_dir: Path | None,
    eps: float,
    norm: str,
    attacks: str | None,
    archs: str,
    width: int,
    epochs: int,
    batch_size: int,
    shift: int,
    lr: float,
    seed: int,
    device: str,
    out_dir: Path,
) -> None:
    """Train victims on preprocessed released slices; score them on original test slices.

    Each counter-attack (JPEG round trips, blur, noise, down/up-sampling, adversarial
    training at the release's budget, 20% clean data mixed in) gets one fresh victim per
    architecture. Reported: original-test accuracy and balanced accuracy, final and peak.
    """
    from medcrypt.cli._slices import read_slice_folder
    from medcrypt.processing import ARCHITECTURES, TrainSettings
    from medcrypt.processing.assessment._counter import (
        DEFAULT_COUNTER_ATTACKS,
        audit_counter_attacks,
    )

    known = tuple(c.name for c in DEFAULT_COUNTER_ATTACKS)
    chosen = _names(attacks, known, "counter-attack(s)") if attacks else known
    arch_list = _names(archs, ARCHITECTURES, "architecture(s)")
    released = read_slice_folder(released_dir)
    test = read_slice_folder(test_dir, classes=released.class_names)
    clean_images = None
    if clean_dir is not None:
        clean = read_slice_folder(clean_dir, classes=released.class_names)
        index = {p: i for i, p in enumerate(clean.paths)}
        missing = [str(p) for p in released.paths if p not in index]
        if missing:
            raise ConfigError(
                f"{len(missing)} released slice(s) have no original, e.g. {missing[:3]}",
                uri=str(clean_dir),
            )
        clean_images = clean.images[[index[p] for p in released.paths]]
    needs_clean = [a for a in chosen if a.startswith("mix_clean")]
    if needs_clean and clean_images is None:
        raise ConfigError(f"counter-attack(s) {needs_clean} need --clean", field="clean")
    train = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, shift=shift)
    with progress_bar("counter-attacks") as progress:
        audit = audit_counter_attacks(
            released.images,
            released.labels,
            test.images,
            test.labels,
            eps=eps,
            norm="linf" if norm == "linf" else "l2",
            n_classes=len(released.class_names),
            clean=clean_images,
            attacks=[c for c in DEFAULT_COUNTER_ATTACKS if c.name in chosen],
            archs=arch_list,
            width=width,
            train=train,
            seed=seed,
            device=device,
            progress=progress,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "counter_attacks.json").write_text(audit.model_dump_json(indent=2) + "\n")
    markdown = audit.to_markdown()
    (out_dir / "counter_attacks.md").write_text(markdown)
    click.echo(markdown)
    click.echo(f"wrote {out_dir}/counter_attacks.(json|md)")


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(audit_group)
