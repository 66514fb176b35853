"""The ``medcrypt`` command. The only place that configures logging and draws progress bars.

Each area registers its subcommands from its own private module so the command tree stays
in one place without one file owning everything:

- ``_keygen``: keygen
- ``_processing``: train, encrypt-slices (slice folders: ``_slices``)
- ``_evaluate``: evaluate (protection report), phantoms
- ``_medical``: slice, phantom-archive
- ``_cluster``: discover, encrypt
- ``_demo``: demo (the whole story, ending at an HTML page)
- ``_report``: report (HTML page of a run)
- ``_study``: study create / ingest / tally
- ``_audit``: audit counter-attacks
"""

from __future__ import annotations

import logging
import sys

import click

from medcrypt import __version__
from medcrypt.cli import (
    _audit,
    _cluster,
    _craft,
    _demo,
    _evaluate,
    _keygen,
    _medical,
    _processing,
    _report,
    _study,
)
from medcrypt.errors import MedcryptError

__all__ = ["main"]


class _Group(click.Group):
    """Turn MedcryptError into a one-paragraph message and exit code 2, no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MedcryptError as exc:
            logging.getLogger("medcrypt").debug("error detail", exc_info=True)
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medcrypt")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Protect medical image archives with adversarial data encryption (Hu et al., 2020).

    Protection is a perturbation people cannot see that makes models trained on the
    released images fail on real ones. It is not cryptography: see the README's threat model.
    """
    level = logging.WARNING if quiet else (logging.INFO if verbose == 1 else logging.WARNING)
    if verbose >= 2:
        level = logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


for _module in (
    _keygen,
    _craft,
    _processing,
    _evaluate,
    _medical,
    _cluster,
    _demo,
    _report,
    _study,
    _audit,
):
    _module.register(main)
