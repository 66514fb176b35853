"""A landing page linking other pages (the demo's ``report.html``)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medcrypt.report._html import page

__all__ = ["IndexLink", "IndexSection", "write_index"]


@dataclass(frozen=True)
class IndexLink:
    """One link: a target file and what the reader finds there."""

    target: Path
    title: str
    description: str = ""


@dataclass(frozen=True)
class IndexSection:
    """A heading, a paragraph (HTML allowed: the caller escapes what it interpolates), links."""

    heading: str
    text_html: str = ""
    links: Sequence[IndexLink] = field(default_factory=tuple)


def write_index(
    out: str | Path, title: str, subtitle: str, sections: Sequence[IndexSection]
) -> Path:
    """Write the page; links are relative to ``out``'s folder so the folder can move."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for s in sections:
        parts.append(f"<h2>{html.escape(s.heading)}</h2>{s.text_html}")
        if s.links:
            items = []
            for link in s.links:
                href = Path(os.path.relpath(link.target, path.parent)).as_posix()
                desc = f" — {html.escape(link.description)}" if link.description else ""
                items.append(
                    f'<li><a href="{html.escape(href)}">{html.escape(link.title)}</a>{desc}</li>'
                )
            parts.append(f'<ul class="links">{"".join(items)}</ul>')
    path.write_text(page(title, html.escape(subtitle), "".join(parts)), encoding="utf-8")
    return path
