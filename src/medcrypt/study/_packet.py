"""The printed parts of a packet: the HTML packet (instructions first) and the answer sheet."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
from collections.abc import Mapping

from medcrypt.study._config import StudyConfig
from medcrypt.study._key import SessionAssignment

__all__ = [
    "SHEET_COLUMNS",
    "instructions_html",
    "order_rule",
    "packet_html",
    "sheet_csv",
    "sheet_name",
]

#: the columns of every answer sheet, in order.
SHEET_COLUMNS = ("reader", "session", "position", "image_id", "diagnosis")


def sheet_name(reader: str, session: int) -> str:
    """File name of a reader's answer sheet for one session."""
    return f"answers_{reader}_session-{session}.csv"


def order_rule(config: StudyConfig) -> str:
    """The instruction on order and going back, as the study's ``allow_revisions`` says."""
    if config.allow_revisions:
        return (
            "Diagnose each image on its own, in the order shown. Do not compare images or "
            "discuss them with other readers. You may go back and change an answer until you "
            "hand the session in."
        )
    return (
        "Diagnose each image on its own, in the order shown. Do not compare images, go "
        "back, or discuss them with other readers."
    )


def instructions_html(
    config: StudyConfig,
    a: SessionAssignment,
    dates: dict[int, dt.date],
    *,
    web: bool = False,
) -> str:
    """The packet's instructions; ``web``: the same words for the web viewer (buttons instead
    of the answer sheet's column)."""
    e = html.escape
    sheet = sheet_name(a.reader, a.session)
    classes = "".join(f"<li><code>{e(c)}</code></li>" for c in config.classes)
    if a.session == 2:
        timing = (
            f'<p class="notbefore">Do not open or read this session before '
            f"<strong>{dates[2].isoformat()}</strong> ({config.washout_days} days after "
            f"session 1 may start). Do not look back at session 1.</p>"
        )
    else:
        timing = (
            f'<p class="notbefore">Session 1 may be read from '
            f"<strong>{dates[1].isoformat()}</strong>. Session 2 will follow after a washout "
            f"of {config.washout_days} days.</p>"
        )
    return (
        f'<section class="instructions">'
        f"<h1>Reader study {e(config.name)}: session {a.session}</h1>"
        f"<p>Reader: <strong>{e(a.reader)}</strong>"
        + (
            ""
            if web
            else f" &middot; Answer sheet: <code>{e(sheet)}</code> &middot; Sheet code: "
            f"<code>{e(a.sheet_code)}</code>"
        )
        + f"</p>{timing}<h2>Instructions</h2><ol>"
        f"<li>This packet holds {len(a.image_ids)} brain MRI slices, "
        + ("shown one at a time" if web else "one per page section")
        + ", each labelled with an image ID.</li>"
        f"<li>{e(order_rule(config))}</li>"
        + (
            "<li>For every image, click exactly one diagnosis (or press its number key), "
            "one of:</li>"
            if web
            else "<li>For every image, write exactly one diagnosis in the <code>diagnosis</code> "
            "column of the answer sheet, on the row with the same image ID, spelled exactly as "
            "one of:</li>"
        )
        + f'</ol><ul class="classes">{classes}</ul>'
        + (
            "<p>Every image needs an answer; if unsure, give your best diagnosis. Your answers "
            "are saved on every click; the final review lists any image left unanswered.</p>"
            if web
            else "<p>Do not add, remove or reorder rows, and do not change the other columns. "
            "Every row needs an answer; if unsure, give your best diagnosis.</p>"
        )
        + "</section>"
    )


_CSS = (
    "body{font-family:sans-serif;margin:1.5cm}"
    ".instructions{page-break-after:always}"
    ".notbefore{border:2px solid #000;padding:.5em;font-size:1.2em}"
    "figure{page-break-inside:avoid;margin:0 0 1cm 0}"
    "figure img{width:12cm;image-rendering:pixelated;background:#000}"
    "figcaption{font-size:1.1em;margin-top:.3em}"
)


def packet_html(config: StudyConfig, a: SessionAssignment, dates: dict[int, dt.date]) -> str:
    e = html.escape
    figures = "".join(
        f'<figure><img src="images/{e(iid)}.png" alt="image {e(iid)}">'
        f"<figcaption>{pos}. Image ID <code>{e(iid)}</code> &mdash; diagnosis: "
        f"______________________</figcaption></figure>"
        for pos, iid in enumerate(a.image_ids, start=1)
    )
    title = e(f"Reader study {config.name}: {a.reader}, session {a.session}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"{instructions_html(config, a, dates)}"
        f'<section class="images">{figures}</section></body></html>\n'
    )


def sheet_csv(
    config: StudyConfig,
    a: SessionAssignment,
    dates: dict[int, dt.date],
    answers: Mapping[str, str] | None = None,
) -> str:
    """The answer sheet; with ``answers`` (image ID -> diagnosis) filled in, as a reader would."""
    filled = answers or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    comments = [
        "# medcrypt reader-study answer sheet",
        f"# study: {config.name}",
        f"# reader: {a.reader}",
        f"# session: {a.session} (not before {dates[a.session].isoformat()})",
        f"# sheet code: {a.sheet_code}",
        "# Write exactly one diagnosis per row in the 'diagnosis' column, spelled as one of:",
        "#   " + " | ".join(config.classes),
        "# Do not add, remove or reorder rows or change the other columns.",
    ]
    for line in comments:
        buffer.write(line + "\n")
    writer.writerow(SHEET_COLUMNS)
    for pos, iid in enumerate(a.image_ids, start=1):
        writer.writerow([a.reader, a.session, pos, iid, filled.get(iid, "")])
    return buffer.getvalue()
