"""The three stages of the archive job, as Ray Data batch functions (one module each).

Every row carries ``case_id``, ``status`` and ``payload`` (the pickled :class:`CaseState`,
``_rows``). A stage works only on ``pending`` rows and passes every other row through
untouched, and every error is caught *per case* and turned into an ``error`` row naming the
stage, so one bad case never takes its batch-mates down and Ray Data never has to drop a block.

- :func:`fetch_batch` (``_fetch``, CPU task): stat the case's sources, skip it if the ledger
  says it is done for these versions and this key, else download to a temp dir, choose the
  slice.
- :class:`EncryptActor` (``_encrypt``, GPU actor): model and key loaded once per actor;
  batched PGD + combiner per image shape. Crash accounting through :class:`AttemptCounter`.
- :func:`write_batch` (``_write``, CPU task): quantise and re-check eps, encode, write
  outputs, then the record (put-if-absent, last), the ledger marker; or the quarantine record.

This module only gathers them for the driver (``_job``).
"""

from __future__ import annotations

from medcrypt.cluster._encrypt import (
    FAULT_KILL_ENV,
    MAX_SOLO_CRASHES,
    AttemptCounter,
    EncryptActor,
)
from medcrypt.cluster._fetch import fetch_batch
from medcrypt.cluster._rows import (
    CHANGED,
    CLAIMED_ELSEWHERE,
    DONE,
    ERROR,
    PENDING,
    QUARANTINED,
    QUARANTINED_BEFORE,
    SKIPPED,
    CaseState,
    StageContext,
    initial_row,
)
from medcrypt.cluster._write import write_batch

__all__ = [
    "CHANGED",
    "CLAIMED_ELSEWHERE",
    "DONE",
    "ERROR",
    "FAULT_KILL_ENV",
    "MAX_SOLO_CRASHES",
    "PENDING",
    "QUARANTINED",
    "QUARANTINED_BEFORE",
    "SKIPPED",
    "AttemptCounter",
    "CaseState",
    "EncryptActor",
    "StageContext",
    "fetch_batch",
    "initial_row",
    "write_batch",
]
