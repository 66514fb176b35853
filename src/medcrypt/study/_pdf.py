"""Optional printable PDF packet (matplotlib), deterministic and blind.

- No creation/modification date, producer or creator in the metadata, and matplotlib's PDF
  writer emits no document ``/ID``: the same packet gives the same bytes.
- Streams are written uncompressed (``pdf.compression: 0``) and images unsampled
  (``interpolation="none"``), so every embedded image of a given (H, W) has the same stream
  length whatever its pixels: a compressed stream of the noisier protected image would be
  longer and give its version away.
- Images are shown in 8-bit grey (window [0, 1]) for printing; the PNG files in ``images/``
  remain the lossless 16-bit reference.
"""

from __future__ import annotations

import datetime as dt
import io
import textwrap
from collections.abc import Mapping

import numpy as np

from medcrypt.study._config import StudyConfig
from medcrypt.study._key import SessionAssignment
from medcrypt.study._packet import order_rule

__all__ = ["packet_pdf"]

_A4 = (8.27, 11.69)
_METADATA: dict[str, str | None] = {
    "CreationDate": None,
    "ModDate": None,
    "Producer": None,
    "Creator": None,
}


def _instruction_lines(
    config: StudyConfig, a: SessionAssignment, dates: Mapping[int, dt.date], sheet: str
) -> list[str]:
    if a.session == 2:
        timing = (
            f"DO NOT OPEN OR READ THIS SESSION BEFORE {dates[2].isoformat()} "
            f"({config.washout_days} days after session 1 may start). Do not look back at "
            "session 1."
        )
    else:
        timing = (
            f"Session 1 may be read from {dates[1].isoformat()}. Session 2 follows after a "
            f"washout of {config.washout_days} days."
        )
    paragraphs = [
        f"Reader study {config.name}: session {a.session}",
        f"Reader: {a.reader}   Answer sheet: {sheet}   Sheet code: {a.sheet_code}",
        timing,
        "Instructions",
        f"1. This packet holds {len(a.image_ids)} brain MRI slices, one per page, each "
        "labelled with an image ID.",
        "2. " + order_rule(config),
        "3. For every image, write exactly one diagnosis in the 'diagnosis' column of the "
        "answer sheet, on the row with the same image ID, spelled exactly as one of:",
        *[f"      {c}" for c in config.classes],
        "Do not add, remove or reorder rows, and do not change the other columns. Every row "
        "needs an answer; if unsure, give your best diagnosis.",
    ]
    lines: list[str] = []
    for p in paragraphs:
        lines += textwrap.wrap(p, width=80, subsequent_indent="   ") if p.strip() else [""]
        lines.append("")
    return lines


def packet_pdf(
    config: StudyConfig,
    a: SessionAssignment,
    dates: Mapping[int, dt.date],
    images: Mapping[str, np.ndarray],
    *,
    sheet: str,
) -> bytes:
    """The packet as PDF bytes: one instructions page, then one A4 page per image."""
    # matplotlib is imported here, when a packet is printed: not by `study serve`
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    buffer = io.BytesIO()
    with (
        matplotlib.rc_context({"pdf.compression": 0, "pdf.fonttype": 42}),
        PdfPages(buffer, metadata=_METADATA) as pdf,
    ):
        fig = Figure(figsize=_A4)
        y = 0.94
        for line in _instruction_lines(config, a, dates, sheet):
            fig.text(0.08, y, line, fontsize=10, family="monospace", va="top")
            y -= 0.022
        pdf.savefig(fig)
        # One figure reused for every image page: only the pixels and the caption change.
        fig = Figure(figsize=_A4)
        ax = fig.add_axes((0.1, 0.3, 0.8, 0.6))
        ax.set_axis_off()
        shown = ax.imshow(
            images[a.image_ids[0]], cmap="gray", vmin=0.0, vmax=1.0, interpolation="none"
        )
        caption = fig.text(0.1, 0.24, "", fontsize=12, family="monospace")
        for position, iid in enumerate(a.image_ids, start=1):
            shown.set_data(images[iid])
            caption.set_text(f"{position}. Image ID {iid}    diagnosis: ______________________")
            pdf.savefig(fig)
    return buffer.getvalue()
