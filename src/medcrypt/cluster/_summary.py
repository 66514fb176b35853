"""The run summary (``_runs/<run_id>/summary.json``) and the exit codes cron sees."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medcrypt.config import StrictModel

__all__ = [
    "EXIT_JOB_FAILED",
    "EXIT_OK",
    "EXIT_QUARANTINED",
    "MAX_LISTED",
    "RunSummary",
    "StageTimings",
]

#: every case done or skipped
EXIT_OK = 0
#: the job ran to the end but THIS run quarantined some cases (see ``_quarantine/``); cases
#: quarantined by an earlier run and not retried are listed, but do not make the exit code 3
EXIT_QUARANTINED = 3
#: the job stopped before every case was accounted for (cluster/storage failure); rerun resumes
EXIT_JOB_FAILED = 4
#: case lists in a summary stop here (the counts are complete)
MAX_LISTED = 1000


class StageTimings(StrictModel):
    """Sums over the cases of this run, seconds (PGD: each case's share of its batch)."""

    fetch_s: float = 0.0
    decode_s: float = 0.0
    pgd_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0


class RunSummary(StrictModel):
    """What one run of the archive job did."""

    schema_version: Literal[1] = 1
    run_id: str
    source: str
    dest: str
    started_at: str
    finished_at: str
    total: int = Field(ge=0)
    done: int = Field(ge=0)
    skipped: int = Field(ge=0)
    #: cases this run tried and quarantined
    quarantined: int = Field(ge=0)
    failed: int = Field(ge=0)
    #: cases left as they are: quarantined by an earlier run with the same inputs and settings
    #: (not retried without ``--redo quarantined``), key/model/settings differ from their
    #: record (not redone without ``--redo changed``), another live run holds their claim
    quarantined_before: int = Field(default=0, ge=0)
    changed: int = Field(default=0, ge=0)
    claimed_elsewhere: int = Field(default=0, ge=0)
    #: ``"case: why"`` for this run's quarantined, the earlier ones and the changed cases
    #: (at most :data:`MAX_LISTED` each)
    quarantined_cases: tuple[str, ...] = ()
    quarantined_before_cases: tuple[str, ...] = ()
    changed_cases: tuple[str, ...] = ()
    wall_s: float
    cases_per_s: float
    stage_totals: StageTimings
    key_fingerprint: str
    model_hash: str
    #: the PGD settings of this run (the key's unless overridden) and the overrides, as in
    #: every record (``processing.key_release``)
    pgd: dict[str, Any] = Field(default_factory=dict)
    pgd_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: folders under the source that ``layout`` discovery left out (not valid cases), each
    #: ``"folder: why"`` (at most 1000 listed), and how many in all
    skipped_folders: tuple[str, ...] = ()
    skipped_folders_total: int = Field(default=0, ge=0)
    error: str | None = None

    @property
    def exit_code(self) -> int:
        """0: all done/skipped/left as they are; 3: this run quarantined some cases; 4: the
        job failed before the end."""
        if self.failed or self.error is not None:
            return EXIT_JOB_FAILED
        if self.quarantined:
            return EXIT_QUARANTINED
        return EXIT_OK
