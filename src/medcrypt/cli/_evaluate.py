"""CLI commands of medcrypt.processing (evaluate, phantoms)."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Attach this area's subcommands to the top-level group."""
