"""Click options shared, with one meaning and one help text, by several commands.

An option that more than one command takes is declared here once; a command that needs
another default passes it (``epochs_option(15)``), never another help text.
``tests/test_entry_points.py`` checks that every command taking one of :data:`SHARED` shows
the same help for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = [
    "MODES",
    "SHARED",
    "archs_option",
    "device_option",
    "epochs_option",
    "foreground_option",
    "mode_option",
    "norm_option",
    "seed_option",
    "width_option",
]

F = TypeVar("F", bound=Callable[..., Any])

#: the protection modes (``PGDSettings.mode``); kept here so the CLI starts without torch
MODES = ("paper", "poison", "shortcut", "shortcut+poison", "unlearnable")

#: ``--device`` of every command that runs a model (``train``, ``encrypt-slices``, ``evaluate``).
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."
)

#: ``--archs`` of the commands that train the attacker's models (``evaluate``, ``audit``).
archs_option = click.option(
    "--archs",
    default="resnet18,vgg11",
    show_default=True,
    help="Comma-separated architectures of the models trained on the released data, one "
    "model each (evaluate: >= 2 for Table 12; audit: one victim each per counter-attack).",
)


def mode_option(default: str, choices: tuple[str, ...] = MODES) -> Callable[[F], F]:
    """``--mode`` of the commands that protect (``keygen``: default unlearnable, the strongest
    measured; ``evaluate``: default paper, and no unlearnable, which needs ``craft``)."""
    return click.option(
        "--mode",
        default=default,
        show_default=True,
        type=click.Choice(list(choices)),
        help="unlearnable: error-minimizing noise toward each slice's own label against a "
        "min-min surrogate (`medcrypt craft`; the strongest measured on real MRI); paper: the "
        "paper's plain targeted L2 PGD (reproduction); poison: TAP-style crafting "
        "(differentiable augmentation, restarts, Linf option); shortcut: keyed class-wise "
        "noise patterns, no model needed, IO speed; shortcut+poison: both inside one budget.",
    )


#: ``--norm`` of the budget (``keygen``, ``evaluate``, ``audit``).
norm_option = click.option(
    "--norm",
    default="l2",
    show_default=True,
    type=click.Choice(["l2", "linf"]),
    help="Budget norm of the release (linf needs a poison or shortcut mode).",
)

#: ``--foreground/--no-foreground`` (``keygen``, ``evaluate``).
foreground_option = click.option(
    "--foreground/--no-foreground",
    default=True,
    show_default=True,
    help="Spend the budget on the anatomy only: background pixels are released unchanged "
    "(--no-foreground: the whole slice, as before the foreground budget existed).",
)


def width_option(default: int) -> Callable[[F], F]:
    """``--width`` of every model a command trains (``train``, ``evaluate``, ``audit``)."""
    return click.option(
        "--width",
        default=default,
        show_default=True,
        type=click.IntRange(min=1),
        help="Channel width of the first stage of every model trained here "
        "(64 = the standard network).",
    )


def epochs_option(default: int) -> Callable[[F], F]:
    """``--epochs`` of every model a command trains (``train``, ``evaluate``, ``audit``)."""
    return click.option(
        "--epochs",
        default=default,
        show_default=True,
        type=click.IntRange(min=1),
        help="Training epochs of every model trained here.",
    )


#: ``--seed`` of the commands that draw data, keys and models from one seed
#: (``phantoms``, ``train``, ``evaluate``, ``audit``). ``keygen``'s seed is a secret and
#: stays its own; the demo's, archive's, report's and study's seed their own draws.
seed_option = click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of every random draw here (phantoms, data split, a drawn key, model "
    "initialisation and shuffling): same seed, same output.",
)

#: option name -> the commands (space-separated paths under ``medcrypt``) that share it
SHARED: dict[str, tuple[str, ...]] = {
    "--device": ("train", "encrypt-slices", "evaluate", "audit counter-attacks", "craft"),
    "--archs": ("evaluate", "audit counter-attacks"),
    "--mode": ("keygen", "evaluate"),
    "--norm": ("keygen", "evaluate", "audit counter-attacks"),
    "--foreground": ("keygen", "evaluate"),
    "--width": ("train", "evaluate", "audit counter-attacks", "craft"),
    "--epochs": ("train", "evaluate", "audit counter-attacks"),
    "--seed": ("phantoms", "train", "evaluate", "audit counter-attacks", "craft"),
}
