"""``medcrypt evaluate --mode unlearnable``: the default mode judged by the Table-12 protocol.

The ``evaluate`` command hands over here for mode unlearnable: on phantoms (built here) or on
a slice folder (``DIR/<class>/*.png|npy``, split per class), the surrogate is crafted on a
sample of the training split as ``medcrypt craft`` does, every slice is released on its own,
and the victims (``--archs``, ``--width``, ``--epochs``) are trained on the release
(:func:`medcrypt.processing.assessment.evaluate_unlearnable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from medcrypt.errors import ConfigError

if TYPE_CHECKING:
    from medcrypt._types import ProgressCallback
    from medcrypt.processing.assessment import ProtectionReport, ProtectionSettings

__all__ = ["UnlearnableOptions", "evaluate_unlearnable_command", "unlearnable_options"]


@dataclass(frozen=True)
class UnlearnableOptions:
    """What only mode unlearnable reads: the crafting sample, surrogate and per-pixel cap."""

    sample: float
    craft_arch: str
    craft_width: int
    rounds: int
    linf_cap: str | None
    victims: str = "thief"


def unlearnable_options(fn: Any) -> Any:
    """The ``evaluate`` options that only mode unlearnable reads."""
    for option in reversed(
        (
            click.option(
                "--sample",
                default=0.25,
                show_default=True,
                type=click.FloatRange(0.0, 1.0, min_open=True),
                help="Mode unlearnable: share of every class of the training split the "
                "surrogate is crafted on (as `craft --sample`; at least 4 slices a class).",
            ),
            click.option(
                "--craft-arch",
                default="cnn",
                show_default=True,
                help="Mode unlearnable: the surrogate's architecture (as `craft --arch`).",
            ),
            click.option(
                "--craft-width",
                default=16,
                show_default=True,
                type=click.IntRange(min=1),
                help="Mode unlearnable: the surrogate's width (as `craft --width`).",
            ),
            click.option(
                "--rounds",
                default=15,
                show_default=True,
                type=click.IntRange(min=1),
                help="Mode unlearnable: at most this many min-min rounds (as `craft --rounds`).",
            ),
            click.option(
                "--victims",
                type=click.Choice(["thief", "plain"]),
                default="thief",
                show_default=True,
                help="Mode unlearnable: how the victims train. thief = as a data thief would "
                "(AdamW one-cycle, batch 64, flips, rotations, resized crops, for --epochs); "
                "plain = Adam at --lr and --batch-size with no augmentation.",
            ),
            click.option(
                "--linf-cap",
                "linf_cap",
                metavar="CAP",
                help="Per-pixel cap beside --eps: a value in [0, 1], N/255 or none (default: "
                "keygen's for the mode, 8/255 for unlearnable, none for the others).",
            ),
        )
    ):
        fn = option(fn)
    return fn


def _slices(
    data_dir: Path | None,
    phantom: bool,
    *,
    n: int,
    n_test: int,
    size: int,
    fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(x_train, y_train, x_test, y_test, class names, dataset name)."""
    from medcrypt.cli._evaluate import _split
    from medcrypt.cli._slices import read_slice_folder
    from medcrypt.medical import CLASS_NAMES, make_phantom_slices

    if data_dir is None:
        if not phantom:
            raise ConfigError("give --data DIR or keep --phantom", field="data")
        x_train, y_train = make_phantom_slices(n, size=size, seed=seed)
        x_test, y_test = make_phantom_slices(n_test, size=size, seed=seed + 1)
        name = f"phantom slices {size}x{size}, seed {seed}"
        return x_train, y_train, x_test, y_test, tuple(CLASS_NAMES), name
    folder = read_slice_folder(data_dir)
    tr, te = _split(folder.labels, fraction, seed)
    return (
        folder.images[tr],
        folder.labels[tr],
        folder.images[te],
        folder.labels[te],
        tuple(folder.class_names),
        str(data_dir),
    )


def evaluate_unlearnable_command(
    *,
    data_dir: Path | None,
    phantom: bool,
    key_path: Path | None,
    model_path: Path | None,
    n_per_class: int,
    n_test_per_class: int,
    size: int,
    test_fraction: float,
    pgd_fields: dict[str, Any],
    options: UnlearnableOptions,
    settings: ProtectionSettings,
    device: str,
    progress: ProgressCallback,
) -> ProtectionReport:
    """The report of ``evaluate --mode unlearnable`` (the options as ``evaluate`` parsed them).

    ``pgd_fields`` are the PGD options given (step and iters only when given, so that the
    mode's own defaults hold); with ``--key`` the key's PGD settings are used instead.
    """
    from pydantic import ValidationError

    from medcrypt.cli._keygen import _parse_cap
    from medcrypt.config import format_validation_error
    from medcrypt.processing import EncryptionKey, MinMinSettings, PGDSettings, default_linf_cap
    from medcrypt.processing.assessment import evaluate_unlearnable

    if model_path is not None:
        raise ConfigError(
            "--model does not apply to mode unlearnable: the evaluation crafts its own "
            "surrogate on the training split, as `medcrypt craft` does",
            field="model",
        )
    if key_path is not None:
        pgd = EncryptionKey.load(key_path).pgd
        if pgd.mode != "unlearnable":
            raise ConfigError(f"--mode unlearnable with a mode {pgd.mode!r} key", uri=str(key_path))
    else:
        fields = dict(pgd_fields)
        cap = (
            default_linf_cap("unlearnable")
            if options.linf_cap is None
            else _parse_cap(options.linf_cap)
        )
        if cap is not None:
            fields["linf_cap"] = cap
        try:
            pgd = PGDSettings.model_validate(fields)
        except ValidationError as exc:
            raise click.UsageError(
                format_validation_error(exc, source="evaluate options")
            ) from None
    x_train, y_train, x_test, y_test, names, dataset = _slices(
        data_dir,
        phantom,
        n=n_per_class,
        n_test=n_test_per_class,
        size=size,
        fraction=test_fraction,
        seed=settings.seed,
    )
    if options.victims == "thief":  # judged on the victims a thief trains (issue 23)
        from medcrypt.processing.assessment import thief_settings

        settings = settings.model_copy(update={"train": thief_settings(settings.train.epochs)})
    minmin = MinMinSettings(
        archs=(options.craft_arch,), width=options.craft_width, max_rounds=options.rounds
    )
    return evaluate_unlearnable(
        x_train,
        y_train,
        x_test,
        y_test,
        class_names=names,
        pgd=pgd,
        settings=settings,
        minmin=minmin,
        sample=options.sample,
        device=device,
        dataset=dataset,
        progress=progress,
    )
