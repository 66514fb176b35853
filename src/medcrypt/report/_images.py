"""PNG renders: slice panels (original, protected, amplified difference) and matplotlib figures.

Panels are rendered from the decoded 16-bit slices themselves (no screenshot, no resampling):
the page scales them up with nearest-neighbour rendering.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["DisplayWindow", "diff_png", "figure_png", "grey_png", "new_figure"]


class DisplayWindow:
    """One grey-level window applied to the original and the protected slice alike.

    ``lo``/``hi`` are in the slices' [0, 1] units: the 0.5th and 99.5th percentiles of the
    original (of the protected slice where there is no original).
    """

    def __init__(self, reference: np.ndarray) -> None:
        lo, hi = np.percentile(reference, [0.5, 99.5])
        if hi - lo < 1e-6:
            lo, hi = float(reference.min()), float(reference.min()) + 1.0
        self.lo, self.hi = float(lo), float(hi)

    def __str__(self) -> str:
        return f"[{self.lo:.3f}, {self.hi:.3f}]"


def _png(array_u8: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array_u8).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def grey_png(array01: np.ndarray, window: DisplayWindow) -> bytes:
    """8-bit greyscale PNG of a [0, 1] slice through ``window``."""
    scaled = (np.asarray(array01, dtype=np.float64) - window.lo) / (window.hi - window.lo)
    return _png(np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8))


def diff_png(protected01: np.ndarray, original01: np.ndarray, full_scale: float) -> bytes:
    """RGB PNG of ``protected - original``: blue negative, red positive, white zero.

    ``full_scale`` is the absolute difference drawn at full colour (the same for every case of
    a page, so the maps compare).
    """
    from matplotlib import colormaps

    d = np.asarray(protected01, dtype=np.float64) - np.asarray(original01, dtype=np.float64)
    t = np.clip(d / max(full_scale, 1e-12), -1.0, 1.0) * 0.5 + 0.5
    rgba = colormaps["RdBu_r"](t)
    return _png(np.round(rgba[..., :3] * 255).astype(np.uint8))


@contextmanager
def new_figure(width_in: float = 6.0, height_in: float = 3.4, **subplots: Any) -> Iterator[Any]:
    """A matplotlib figure and axes on the Agg backend (no display needed), closed after."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    axes = fig.subplots(**subplots)
    try:
        yield fig, axes
    finally:
        fig.clear()


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
