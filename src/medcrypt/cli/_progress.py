"""Progress bars for the CLI (rich). Library code only sees a ``ProgressCallback``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from medcrypt._types import ProgressCallback

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressCallback]:
    """Yield a ``progress(done, total, what)`` callback drawing a bar on stderr.

    Silent when ``medcrypt -q`` was given or stderr is not a terminal-capable console.
    """
    ctx = click.get_current_context(silent=True)
    quiet = bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("quiet"))
    if quiet:
        yield lambda done, total, what: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[what]}"),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None, what="")

        def update(done: int, total: int | None, what: str) -> None:
            bar.update(task, completed=done, total=total, what=what)

        yield update
