"""CLI commands of medcrypt.cluster: ``encrypt`` (the archive job), ``discover``.

Exit codes of ``medcrypt encrypt`` (for cron):

- 0: every case done or skipped
- 2: the job did not start (bad config, manifest, URI, model or key; nothing was written)
- 3: the job ran to the end and THIS run quarantined some cases (see
  ``<dest>/_quarantine/``; cases quarantined by earlier runs are listed, not counted)
- 4: the job stopped before every case was accounted for (cluster or storage failure);
  the next run resumes where it stopped
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from medcrypt.cli import _submit
from medcrypt.cli._progress import progress_bar

__all__ = ["register"]


def _job_options(fn: Any) -> Any:
    """Add a flag for every JobConfig field (from the config module's own option list)."""
    from medcrypt.cluster import JobConfig, job_cli_options

    for opt in reversed(job_cli_options()):
        field = JobConfig.model_fields.get(opt.path[0]) if len(opt.path) == 1 else None
        # a tuple field (formats) takes a comma-separated list: JobConfig checks each item
        listed = field is not None and "tuple" in str(field.annotation)
        if opt.type is bool:
            decl = f"{opt.flag}/{opt.negative}"
            fn = click.option(decl, opt.name, default=None, help=opt.help)(fn)
        else:
            kind: Any = click.Choice(opt.choices) if opt.choices and not listed else opt.type
            fn = click.option(opt.flag, opt.name, type=kind, default=None, help=opt.help)(fn)
    return fn


def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("quiet"))


@click.command("encrypt")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Job config YAML; any flag below overrides its field.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="List which cases would be done (new), skipped or are invalid; write nothing.",
)
@_job_options
def encrypt_cmd(config_path: Path | None, dry_run: bool, **options: Any) -> None:
    """Protect every case of an archive (Ray Data job; see --help of each option).

    Exit code: 0 all done, skipped or left as they are, 2 not started (bad input), 3 this run
    quarantined some cases, 4 stopped early (rerun resumes).
    """
    from medcrypt.cluster import load_job_config

    config = load_job_config(config_path, overrides=options)
    # Ray and torch only once the config is valid: a refused config answers in a second
    from medcrypt.cluster import plan_job, prepare_job
    from medcrypt.cluster._job import execute

    if dry_run:
        counts: Counter[str] = Counter()
        for entry in plan_job(config):
            counts[entry.status] += 1
            reason = f"  ({entry.reason})" if entry.reason else ""
            click.echo(f"{entry.status:<12}{entry.case_id}{reason}")
        left_out = (
            f", {counts['left-out']} folder(s) left out (not valid cases)"
            if counts["left-out"]
            else ""
        )
        click.echo(
            "dry run: "
            + ", ".join(
                f"{counts[k]} {k}" for k in ("new", "skipped", "changed", "quarantined", "invalid")
            )
            + f"{left_out}; nothing written to {config.dest}"
        )
        return
    # every check runs (and a refusal exits 2) before anything is drawn or written
    inputs = prepare_job(config)
    with progress_bar("encrypt") as progress:
        summary = execute(inputs, progress=progress)
    click.echo(
        f"run {summary.run_id}: {summary.done} done, {summary.skipped} skipped, "
        f"{summary.quarantined} quarantined, {summary.failed} failed "
        f"in {summary.wall_s:.1f}s ({summary.cases_per_s:.2f} cases/s)"
    )
    left = (
        (summary.changed, "changed (not redone; --redo changed)", summary.changed_cases),
        (summary.quarantined_before, "quarantined before (not retried)", ()),
        (summary.claimed_elsewhere, "claimed by another run that is still running", ()),
    )
    for count, what, cases in left:
        if count:
            click.echo(f"{count} {what}")
            for text in cases[:20]:
                click.echo(f"  {text}")
    if summary.skipped_folders_total:
        click.echo(
            f"{summary.skipped_folders_total} folder(s) under the source left out, not valid "
            f"{config.layout} cases (skipped_folders in the summary):",
            err=True,
        )
        for text in summary.skipped_folders[:20]:
            click.echo(f"  left out {text}", err=True)
        if summary.skipped_folders_total > 20:
            click.echo(f"  ... and {summary.skipped_folders_total - 20} more", err=True)
    click.echo(f"summary: {config.dest.rstrip('/')}/_runs/{summary.run_id}/summary.json")
    if summary.error:
        click.echo(f"error: {summary.error}", err=True)
    sys.exit(summary.exit_code)


@click.command("discover")
@click.option("--source", required=True, help="Archive root: s3://bucket/prefix or a folder.")
@click.option(
    "--layout",
    type=click.Choice(["brats", "case-folders"]),
    required=True,
    help="How cases are laid out under the source.",
)
@click.option("--out", required=True, help="Manifest CSV to write (path or s3:// URI).")
@click.option("--prefix", default="", help="Only look under this key prefix of the source.")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint (MinIO, Ceph).")
def discover_cmd(source: str, layout: str, out: str, prefix: str, endpoint_url: str | None) -> None:
    """Write a manifest (case_id,image,mask,label) for the cases found under a source."""
    from medcrypt.cluster._discover import discover
    from medcrypt.storage import open_store

    store = open_store(source, endpoint_url=endpoint_url)
    found = discover(
        store,
        layout=layout,  # type: ignore[arg-type]
        out=out,
        prefix=prefix,
        endpoint_url=endpoint_url,
    )
    click.echo(f"{found.cases} cases written to {found.out}; {found.skipped} folders skipped")
    for reason in found.reasons:
        click.echo(f"  skipped {reason}")


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
    group.add_command(encrypt_cmd)
    group.add_command(discover_cmd)
    _submit.register(group)
