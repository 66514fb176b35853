"""``medcrypt submit``: run a medcrypt command as a Ray job and exit with ITS exit code.

For cron: ``ray job submit`` exits 1 for every failed job, so the archive job's codes
(0 done, 2 not started, 3 quarantined, 4 stopped early) are lost through it. This command
submits through the Jobs API, waits, prints the job's log and exits with the code the
command printed on the cluster (see ``medcrypt.cluster._submit``).
"""

from __future__ import annotations

import sys

import click

__all__ = ["register"]


@click.command(
    "submit",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--address",
    envvar="RAY_ADDRESS",
    required=True,
    help="The Ray dashboard URL, e.g. http://head:8265 (default: $RAY_ADDRESS).",
)
@click.option(
    "--working-dir",
    default=".",
    show_default=True,
    help="Folder uploaded as the job's working directory (.gitignore honoured); '' for none.",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop the job and exit 4 after this many seconds (default: wait for it).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def submit_cmd(
    address: str, working_dir: str, timeout_s: float | None, command: tuple[str, ...]
) -> None:
    """Run `medcrypt COMMAND...` on a Ray cluster and exit with its exit code.

    Example: medcrypt submit --address http://head:8265 -- -q encrypt -c job.yaml
    (a token-authenticated cluster also needs RAY_AUTH_MODE=token and the token; see README).
    """
    from medcrypt.cluster._submit import submit_and_wait
    from medcrypt.cluster._summary import EXIT_JOB_FAILED
    from medcrypt.errors import JobError

    try:
        result = submit_and_wait(
            address, list(command), working_dir=working_dir or None, timeout_s=timeout_s
        )
    except JobError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_JOB_FAILED)
    click.echo(result.logs.rstrip("\n"))
    click.echo(
        f"ray job {result.job_id}: {result.status}; medcrypt exit code {result.exit_code}",
        err=True,
    )
    sys.exit(result.exit_code)


def register(group: click.Group) -> None:
    """Attach ``submit`` to the top-level group."""
    group.add_command(submit_cmd)
