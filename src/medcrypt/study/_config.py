"""The study configuration: what a coordinator fixes before any packet is printed.

Load it from YAML with :func:`medcrypt.config.load_config`::

    name: tumour-reader-study
    classes: [meningioma, chordoma, schwannoma, pituitary_adenoma, craniopharyngioma]
    readers: [dr_a, dr_b, dr_c]
    design: counterbalanced
    seed: 20200101
    washout_days: 28
    start_date: 2026-12-01
    non_inferiority_margin: 0.05
    allow_revisions: false      # readers may not go back (the default)
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import Field, field_validator

from medcrypt.config import StrictModel

__all__ = ["StudyConfig", "StudyDesign"]

#: ``paper``: session 1 holds every original, session 2 every protected image (Figure 5).
#: ``counterbalanced``: each session holds one version of every case, never both; which
#: version comes first is balanced across cases and alternates between readers.
StudyDesign = Literal["paper", "counterbalanced"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StudyConfig(StrictModel):
    """Everything that defines a reader study, fixed before packets are created.

    The secret study key is *not* part of the config: it is generated when the study is
    created and stored only in the unblinding key file.
    """

    name: str = Field(default="reader-study", min_length=1, max_length=80)
    classes: tuple[str, ...] = Field(min_length=2)
    readers: tuple[str, ...] = Field(min_length=1)
    design: StudyDesign = "counterbalanced"
    seed: int = Field(ge=0)
    washout_days: int = Field(default=28, ge=0, le=3650)
    #: the first day session 1 may be read; session 2 may not be read before
    #: ``start_date + washout_days``. ``None``: the day the study is created.
    start_date: dt.date | None = None
    #: non-inferiority margin on accuracy (protected minus original), as a proportion.
    non_inferiority_margin: float = Field(default=0.05, gt=0.0, lt=1.0)
    #: also write ``packet.pdf`` (deterministic, uncompressed streams) next to the HTML packet.
    pdf_packets: bool = False
    #: two-sided significance level for every confidence interval (CI level 1 - alpha).
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    #: whether a reader may go back and change an answer before handing the session in.
    #: ``False`` (the default, and what every study created before this setting existed
    #: printed): "Do not ... go back"; the web app then refuses a second answer to an image.
    allow_revisions: bool = False

    @field_validator("classes", "readers")
    @classmethod
    def _names_are_safe_and_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _NAME.match(v)]
        if bad:
            raise ValueError(
                f"names must be letters, digits, '_', '.' or '-' (starting with a letter or "
                f"digit) so they are safe in file names and CSV cells; got {bad}"
            )
        folded = [v.casefold() for v in value]
        dupes = sorted({v for v in value if folded.count(v.casefold()) > 1})
        if dupes:
            raise ValueError(f"names must be unique (ignoring case); repeated: {dupes}")
        return value
