"""CLI commands of medcrypt.medical: slice, phantom-archive."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from medcrypt.cli._progress import progress_bar

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _int_list(value: str | None) -> list[int] | None:
    if value is None or not value.strip():
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from exc


@click.command("slice")
@click.option(
    "--image",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="NIfTI file (.nii / .nii.gz) or DICOM series folder.",
)
@click.option(
    "--mask",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="NIfTI label mask in the image's world space.",
)
@click.option("--case-id", default=None, help="Case name for messages (default: image name).")
@click.option(
    "--labels",
    "labels_text",
    default=None,
    help="Comma-separated tumour labels (default: any label > 0), e.g. 1,4.",
)
@click.option(
    "--fallback",
    default="error",
    show_default=True,
    type=click.Choice(["error", "largest_brain"]),
    help="What to do with an empty tumour mask (the choice is recorded).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
def slice_command(
    image: Path,
    mask: Path,
    case_id: str | None,
    labels_text: str | None,
    fallback: str,
    as_json: bool,
) -> None:
    """Show which axial slice has the largest tumour (stored and canonical index, mm^2)."""
    from medcrypt.medical import load_case_slice

    cid = case_id or image.name
    s = load_case_slice(
        image,
        mask,
        case_id=cid,
        tumour_labels=_int_list(labels_text),
        fallback=fallback,  # type: ignore[arg-type]
    )
    info = {
        "case_id": cid,
        "image": str(image),
        "mask": str(mask),
        **s.choice.to_dict(),
        "shape": list(s.array.shape),
        "window": list(s.window),
        "affine": s.affine.tolist(),
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    c = s.choice
    tie = f", tied with {list(c.tied_indices)}" if len(c.tied_indices) > 1 else ""
    click.echo(
        f"{cid}: axial axis {c.axis}, stored slice {c.stored_index} "
        f"(canonical {c.canonical_index} of {c.n_slices}, inferior->superior), "
        f"tumour {c.area_mm2:.1f} mm^2{tie}; centre at "
        f"({', '.join(f'{v:.1f}' for v in c.world_position)}) mm RAS"
    )
    if c.fallback:
        click.echo(f"fallback: {c.fallback}")


@click.command("phantom-archive")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write <case_id>/image.nii.gz|image/ + mask.nii.gz and labels.csv into.",
)
@click.option(
    "--cases",
    "n_cases",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of phantom cases (image + mask each).",
)
@click.option(
    "--formats",
    default="nifti",
    show_default=True,
    help="Comma-separated formats cycled over the cases: nifti, dicom.",
)
@click.option(
    "--orientations",
    default=None,
    help="Comma-separated axis codes cycled over the cases (default: LPS,RAS,LAI,IAL,PSR).",
)
@click.option("--shape", default="64,64,24", show_default=True, help="Phantom nx,ny,nz.")
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the phantoms (same seed, same archive).",
)
def phantom_archive_command(
    out_dir: Path, n_cases: int, formats: str, orientations: str | None, shape: str, seed: int
) -> None:
    """Write a synthetic archive of 3D tumour cases (NIfTI and/or DICOM series)."""
    from medcrypt.medical import PHANTOM_ORIENTATIONS, write_phantom_archive

    fmts = [f.strip().lower() for f in formats.split(",") if f.strip()]
    bad = [f for f in fmts if f not in ("nifti", "dicom")]
    if bad or not fmts:
        raise click.BadParameter(
            f"expected nifti and/or dicom, got {formats!r}", param_hint="--formats"
        )
    orients = (
        [o.strip().upper() for o in orientations.split(",") if o.strip()]
        if orientations
        else list(PHANTOM_ORIENTATIONS)
    )
    dims = _int_list(shape)
    if dims is None or len(dims) != 3:
        raise click.BadParameter(
            f"expected three sizes like 64,64,24, got {shape!r}", param_hint="--shape"
        )
    try:
        with progress_bar("writing phantom archive") as progress:
            labels = write_phantom_archive(
                out_dir,
                n_cases=n_cases,
                seed=seed,
                formats=fmts,
                orientations=orients,
                shape=(dims[0], dims[1], dims[2]),
                progress=progress,
            )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"wrote {n_cases} cases ({', '.join(fmts)}) to {out_dir}; labels in {labels}")


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(slice_command)
    group.add_command(phantom_archive_command)
