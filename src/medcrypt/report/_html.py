"""The page shell every report shares: one self-contained HTML file, no script, no network.

Numbers that a reader (or a test) may want to check against the JSON they came from carry a
``data-field`` attribute naming that JSON field, e.g. ``<td data-field="summary.done">``.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence

__all__ = ["Cell", "fmt_float", "fmt_pct", "img_tag", "num", "page", "table"]

_CSS = """
:root { --ink: #1d2430; --muted: #5b6576; --line: #dde2ea; --band: #f5f7fa;
  --accent: #2c5d8f; --bad: #a3312b; --ok: #2f7d4f; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: #fff; }
header { background: var(--accent); color: #fff; padding: 18px 32px 14px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; opacity: .85; font-size: 13px; }
header a { color: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 32px 48px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
p.note, .note { color: var(--muted); font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 130px;
  background: var(--band); }
.card .v { font-size: 24px; font-weight: 600; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card.bad .v { color: var(--bad); } .card.ok .v { color: var(--ok); }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px 5px 0; text-align: left;
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase;
  letter-spacing: .03em; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
.kv { width: 100%; max-width: 920px; }
.kv th { text-transform: none; letter-spacing: 0; font-size: 13px; width: 200px; }
.case .kv th { width: 140px; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; }
.figs img { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(470px, 1fr)); gap: 16px; }
.case { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.case h3 { margin: 0 0 6px; }
.panels { display: flex; gap: 8px; }
.panels figure { margin: 0; text-align: center; font-size: 12px; color: var(--muted); }
.panels img { width: 140px; height: 140px; image-rendering: pixelated; background: #000;
  border-radius: 4px; }
.case table { margin: 6px 0 0; font-size: 13px; }
.tag { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 9px;
  background: var(--band); border: 1px solid var(--line); color: var(--muted); }
.err { color: var(--bad); }
.links li { margin: 6px 0; }
.links a { font-weight: 600; }
"""


def fmt_float(value: object, digits: int = 2) -> str:
    """A float with ``digits`` decimals; ``inf`` for identical images, ``n/a`` for none/NaN."""
    if value is None:
        return "n/a"
    v = float(value)  # type: ignore[arg-type]
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def fmt_pct(value: object, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.{digits}f}%"  # type: ignore[arg-type]


class Cell:
    """A table cell: escaped text, optionally numeric (right-aligned) and tagged with a field."""

    def __init__(
        self, text: object, *, field: str | None = None, numeric: bool = False, raw: bool = False
    ) -> None:
        self.text = str(text) if raw else html.escape(str(text))
        self.field = field
        self.numeric = numeric

    def render(self, tag: str = "td") -> str:
        attrs = ' class="n"' if self.numeric else ""
        if self.field:
            attrs += f' data-field="{html.escape(self.field)}"'
        return f"<{tag}{attrs}>{self.text}</{tag}>"


def num(text: object, field: str | None = None) -> Cell:
    """A right-aligned numeric cell."""
    return Cell(text, field=field, numeric=True)


def table(header: Sequence[str | Cell], rows: Iterable[Sequence[object]], *, cls: str = "") -> str:
    """An HTML table; plain values are escaped, :class:`Cell` values keep their attributes."""

    def cell(v: object, tag: str) -> str:
        return (v if isinstance(v, Cell) else Cell(v)).render(tag)

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img_tag(png: bytes, alt: str, *, width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded as a base64 data URI (the page stays one file)."""
    data = base64.b64encode(png).decode("ascii")
    size = f' width="{width}"' if width else ""
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"{size}>'


def page(title: str, subtitle: str, body: str) -> str:
    """The whole document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{subtitle}</p></header>"
        f"<main>{body}</main></body></html>\n"
    )
