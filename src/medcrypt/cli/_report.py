"""CLI command ``medcrypt report``: the HTML page of one archive-job run."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["register"]


@click.command("report")
@click.argument("dest")
@click.option(
    "--run-id",
    default=None,
    help="Run to report (a folder name under DEST/_runs/); default: the latest started.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write (default: ./report-<run_id>.html). Keep it off the shared "
    "release: it shows original pixels when DEST has _originals/.",
)
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint for an s3:// DEST.")
@click.option(
    "--gallery",
    "gallery_size",
    type=click.IntRange(min=1),
    default=48,
    show_default=True,
    help="Cases shown in the gallery; above it, the worst by PSNR plus a seeded random draw.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the gallery's random draw."
)
def report_cmd(
    dest: str,
    run_id: str | None,
    out: Path | None,
    endpoint_url: str | None,
    gallery_size: int,
    seed: int,
) -> None:
    """Write a self-contained HTML report of one run of the archive job under DEST.

    DEST is the job's dest prefix, a folder or s3://bucket/prefix. The page holds the run
    summary, every quarantined case with its reason, PSNR/SSIM histograms and a gallery
    (original, protected, amplified difference); images are embedded, nothing is fetched.
    """
    from medcrypt.report import load_run, render_run_report

    run = load_run(dest, run_id, endpoint_url=endpoint_url)
    path = out or Path(f"report-{run.run_id}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_run_report(run, gallery_size=gallery_size, seed=seed), encoding="utf-8")
    s = run.summary
    click.echo(
        f"run {run.run_id}: {s.get('done')} done, {s.get('skipped')} skipped, "
        f"{s.get('quarantined')} quarantined; {len(run.quarantine)} quarantine record(s) under dest"
    )
    click.echo(f"report: {path}")


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(report_cmd)
