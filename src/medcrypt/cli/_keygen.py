"""``medcrypt keygen``: a secret encryption key (targets, combiner parameters, PGD settings)."""

from __future__ import annotations

import secrets
from pathlib import Path

import click
from pydantic import ValidationError

from medcrypt.cli._options import foreground_option, mode_option, norm_option
from medcrypt.config import format_validation_error

__all__ = ["register"]


@click.command("keygen")
@click.option("--classes", help="Comma-separated class names, in model output order.")
@click.option(
    "--phantom-classes",
    is_flag=True,
    help="Use the 5 phantom tumour classes (medcrypt.medical.CLASS_NAMES).",
)
@click.option(
    "--combiner",
    type=click.Choice(["none", "concat", "mixup", "mixup_concat", "cutmix"]),
    help="How the per-target PGD outputs are merged (none = basic single-target method); "
    "default concat, and none for mode unlearnable (every class maps to itself).",
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
    type=click.FloatRange(min=0, min_open=True),
    help="PGD step (L2 length of each normalised step; with --norm linf the per-pixel sign "
    "step); default 0.1, and 2.5 * eps / iters for mode unlearnable.",
)
@click.option(
    "--iters",
    type=click.IntRange(min=0),
    help="PGD iterations; default 100 (the paper), and 20 for mode unlearnable.",
)
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fp32", "bf16"]),
    help="auto = bf16 autocast on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16), "
    "fp32 elsewhere.",
)
@mode_option("unlearnable")
@norm_option
@foreground_option
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
    "--linf-cap",
    "linf_cap",
    metavar="CAP",
    help="Largest change of any single pixel, held together with --eps: a value in [0, 1], "
    "N/255 (8-bit levels), or none. Default: 8/255 for mode unlearnable (README, per-pixel "
    "cap), none for the other modes (paper stays the paper's method).",
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
    combiner: str | None,
    targets_per_class: int | None,
    allow_fixed_points: bool,
    seed: int | None,
    eps: float,
    step: float | None,
    iters: int | None,
    precision: str,
    mode: str,
    norm: str,
    foreground: bool,
    restarts: int | None,
    augment: float | None,
    shortcut_patch: int,
    shortcut_share: float,
    linf_cap: str | None,
    out_path: Path,
    force: bool,
) -> None:
    """Generate a secret encryption key and print its fingerprint (never the secret).

    Keep the key file private: it holds the target classes, combiner parameters and the
    secret behind the fingerprint. Outputs name the key only by fingerprint. The default
    mode, unlearnable, needs one more step before the job: `medcrypt craft` (its surrogate).
    """
    from medcrypt.processing import EncryptionKey, PGDSettings, default_linf_cap

    if bool(classes) == phantom_classes:
        raise click.UsageError("give exactly one of --classes a,b,c or --phantom-classes")
    if phantom_classes:
        from medcrypt.medical import CLASS_NAMES

        names: tuple[str, ...] = tuple(CLASS_NAMES)
    else:
        assert classes is not None
        names = tuple(c.strip() for c in classes.split(",") if c.strip())
    unlearnable = mode == "unlearnable"
    if combiner is None:
        combiner = "none" if unlearnable else "concat"
    if unlearnable and (combiner != "none" or allow_fixed_points or targets_per_class):
        raise click.UsageError(
            "mode unlearnable maps every class to itself: no --combiner other than none, "
            "--targets-per-class or --allow-fixed-points"
        )
    chosen: dict[str, object] = {
        "eps": eps,
        "precision": precision,
        "mode": mode,
        "norm": norm,
        "foreground": foreground,
        "shortcut_patch": shortcut_patch,
        "shortcut_share": shortcut_share,
    }
    # not given: the mode's own defaults (PGDSettings)
    for name, value in (("step", step), ("iters", iters), ("restarts", restarts),
                        ("augment", augment)):  # fmt: skip
        if value is not None:
            chosen[name] = value
    cap = default_linf_cap(mode) if linf_cap is None else _parse_cap(linf_cap)
    if cap is not None:
        chosen["linf_cap"] = cap
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
        f"per-pixel cap {'none' if cap is None else f'{cap:.4g} ({cap * 255:.3g}/255)'}, "
        f"foreground {'on' if foreground else 'off'})"
    )
    if unlearnable:
        click.echo(
            f"next: medcrypt craft --key {out_path} --data SLICES/ --out surrogate.pt "
            f"(the min-min surrogate the job crafts against; pass it as --model)"
        )


def _parse_cap(text: str) -> float | None:
    """``none``, a number in (0, 1], or ``N/255`` -> the cap (None for none)."""
    t = text.strip().lower()
    if t in ("none", "off", "0"):
        return None
    try:
        num, _, den = t.partition("/")
        value = float(num) / (float(den) if den else 1.0)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(
            f"expected a number in (0, 1], N/255 or none, got {text!r}", param_hint="--linf-cap"
        ) from None
    if not 0.0 < value <= 1.0:
        raise click.BadParameter(
            f"a per-pixel cap lies in (0, 1] (pixel units), got {text!r} = {value:g}",
            param_hint="--linf-cap",
        )
    return value


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(keygen_command)
