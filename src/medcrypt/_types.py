"""Small shared types. Library code never draws progress bars; it calls a callback."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback"]

#: ``progress(done, total, what)``: ``done`` units of ``total`` (None if unknown) finished,
#: ``what`` a short label ("epoch 3/10", "cases"). The CLI turns this into a rich bar.
ProgressCallback = Callable[[int, "int | None", str], None]
