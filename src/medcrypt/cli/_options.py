"""Click options shared, with one meaning, by several commands."""

from __future__ import annotations

import click

__all__ = ["device_option"]

#: ``--device`` of every command that runs a model (``train``, ``encrypt-slices``, ``evaluate``).
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."
)
