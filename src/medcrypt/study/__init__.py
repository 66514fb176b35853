"""medcrypt.study: the reader study of the paper's Figures 5-6, as a tool for a coordinator.

``create_study`` writes blinded, per-reader shuffled packets and answer sheets plus an
owner-only unblinding key; ``ingest_sheets`` validates filled sheets (all problems at once)
and appends the answers to a JSONL log; ``tally`` computes the Figure 6 categories and the
agreement statistics and ``write_report`` writes JSON, Markdown, HTML, a chart and iMRMC
input files. Never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcrypt._lazy import lazy_exports

if TYPE_CHECKING:
    from medcrypt.study._config import StudyConfig, StudyDesign
    from medcrypt.study._create import (
        SHEET_COLUMNS,
        CreatedStudy,
        create_study,
        plan_sessions,
        sheet_name,
    )
    from medcrypt.study._images import encode_packet_png
    from medcrypt.study._ingest import IngestResult, SheetInput, StoredSheet, ingest_sheets
    from medcrypt.study._key import (
        ImageEntry,
        SessionAssignment,
        UnblindingKey,
        Version,
        image_id,
        load_key,
    )
    from medcrypt.study._log import AnswerRecord, read_answers
    from medcrypt.study._report import (
        draw_figure6,
        format_p,
        imrmc_files,
        render_markdown,
        write_report,
    )
    from medcrypt.study._sources import (
        StudyCase,
        cases_from_archive,
        cases_from_folders,
        read_labels_csv,
    )
    from medcrypt.study._stats import tango_interval, tango_score
    from medcrypt.study._tally import (
        FIGURE6_CATEGORIES,
        FIGURE6_SPLIT,
        PAPER_FIGURE6,
        AcrossReaders,
        Figure6,
        PairedSummary,
        Stat,
        TallyReport,
        tally,
    )
    from medcrypt.study._washout import SessionTiming
else:  # each name is imported from its module on first use (medcrypt/_lazy.py)
    __getattr__, __dir__ = lazy_exports(__name__, __file__)

__all__ = [
    "FIGURE6_CATEGORIES",
    "FIGURE6_SPLIT",
    "PAPER_FIGURE6",
    "SHEET_COLUMNS",
    "AcrossReaders",
    "AnswerRecord",
    "CreatedStudy",
    "Figure6",
    "ImageEntry",
    "IngestResult",
    "PairedSummary",
    "SessionAssignment",
    "SessionTiming",
    "SheetInput",
    "Stat",
    "StoredSheet",
    "StudyCase",
    "StudyConfig",
    "StudyDesign",
    "TallyReport",
    "UnblindingKey",
    "Version",
    "cases_from_archive",
    "cases_from_folders",
    "create_study",
    "draw_figure6",
    "encode_packet_png",
    "format_p",
    "image_id",
    "imrmc_files",
    "ingest_sheets",
    "load_key",
    "plan_sessions",
    "read_answers",
    "read_labels_csv",
    "render_markdown",
    "sheet_name",
    "tally",
    "tango_interval",
    "tango_score",
    "write_report",
]
