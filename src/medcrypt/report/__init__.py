"""medcrypt.report: HTML pages a person opens (run report, protection page, demo index).

Each page is one self-contained HTML file: images are PNG renders embedded as base64, no
script, nothing fetched from the network. Records and reports are read as JSON through
:mod:`medcrypt.storage`; this package never imports torch, ray, the cluster or the study.
"""

from __future__ import annotations

from medcrypt.report._index import IndexLink, IndexSection, write_index
from medcrypt.report._protection import (
    load_protection_reports,
    render_protection_page,
    write_protection_page,
)
from medcrypt.report._run_data import RunData, foreground_metrics, load_run, sample_gallery
from medcrypt.report._run_page import render_run_report, write_run_report

__all__ = [
    "IndexLink",
    "IndexSection",
    "RunData",
    "foreground_metrics",
    "load_protection_reports",
    "load_run",
    "render_protection_page",
    "render_run_report",
    "sample_gallery",
    "write_index",
    "write_protection_page",
    "write_run_report",
]
